"""Payload builders: in-memory document -> the `document` record of its event schema.

Pure functions of the document (no database, no Frappe import), compiled from the schema
(`compiler.py`): a doctype's payload is its Avro schema, `schemas/avro/<doctype>.v<N>.avsc`,
where each field's `doc` says what it holds. `get_builder(doctype)` gives `to_dict(doc) ->
dict` for a shipped doctype; `generic_to_dict(doc, schema)` builds any schema, e.g. one
from `schemas.derive.derive_schema` for an admin-added doctype. A value that cannot be
converted raises `BuildError` (a `schemas.EventDataError`) naming the field.
"""

from erpnext_streaming.emitters.builders.masking import mask, maskable_fields, maskable_fields_of
from erpnext_streaming.emitters.builders.registry import document_builder, generic_to_dict, get_builder
from erpnext_streaming.schemas.errors import BuildError
