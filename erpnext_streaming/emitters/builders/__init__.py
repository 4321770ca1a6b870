"""Payload builders: in-memory document -> the `document` record of its event schema.

Pure functions of the document (no database, no Frappe import): `get_builder(doctype)`
gives `to_dict(doc) -> dict` for the five shipped doctypes (also importable as
`builders.sales_invoice.to_dict`, ...); `generic_to_dict(doc, schema)` builds any schema,
e.g. one from `schemas.derive.derive_schema` for an admin-added doctype. A value that
cannot be converted raises `BuildError` (a `schemas.EventDataError`) naming the field.
"""

from erpnext_streaming.emitters.builders import (
	gl_entry,
	job_card,
	sales_invoice,
	stock_ledger_entry,
	work_order,
)
from erpnext_streaming.emitters.builders.masking import mask, maskable_fields, maskable_fields_of
from erpnext_streaming.emitters.builders.registry import document_builder, generic_to_dict, get_builder
from erpnext_streaming.schemas.errors import BuildError

BUILDERS = {
	module.DOCTYPE: module.to_dict
	for module in (sales_invoice, gl_entry, stock_ledger_entry, work_order, job_card)
}
