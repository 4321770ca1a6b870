"""How Frappe fieldtypes become Avro types: one table for the shipped and the derived schemas
(the whole table, and why money is decimal(21,9) and datetimes local-timestamp-micros, is in
docs/event-catalog.md, generated from the sets below).

Every field is optional (`["null", T]`, default null) so a schema can gain a field without
breaking readers, except a document's `name` and `docstatus`, a child row's `name` and
`idx`, Check fields (boolean, default false) and tables (array, default []). A Currency
value is `Decimal(str(value))` quantized to 9 places ROUND_HALF_UP, what MariaDB does when
it stores the value in Frappe's `decimal(21,9)` column.
"""

from __future__ import annotations

import re
from typing import Any

NAMESPACE = "io.erpnext.streaming"
DECIMAL_PRECISION = 21
DECIMAL_SCALE = 9

STRING_FIELDTYPES = frozenset(
	(
		"Data",
		"Link",
		"Dynamic Link",
		"Select",
		"Small Text",
		"Text",
		"Long Text",
		"Text Editor",
		"Read Only",
		"Code",
		"HTML Editor",
		"Markdown Editor",
		"JSON",
		"Phone",
		"Autocomplete",
		"Barcode",
		"Color",
		"Icon",
		"Attach",
		"Attach Image",
		"Geolocation",
	)
)
DOUBLE_FIELDTYPES = frozenset(("Float", "Percent", "Rating", "Duration"))
TABLE_FIELDTYPES = frozenset(("Table", "Table MultiSelect"))
# never streamed: secrets, and fields that hold no data
SKIPPED_FIELDTYPES = frozenset(
	(
		"Password",
		"Signature",
		"Section Break",
		"Column Break",
		"Tab Break",
		"HTML",
		"Button",
		"Fold",
		"Heading",
		"Image",
	)
)

AVRO_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def decimal_type() -> dict:
	return {
		"type": "bytes",
		"logicalType": "decimal",
		"precision": DECIMAL_PRECISION,
		"scale": DECIMAL_SCALE,
	}


def date_type() -> dict:
	return {"type": "int", "logicalType": "date"}


def datetime_type() -> dict:
	return {"type": "long", "logicalType": "local-timestamp-micros"}


def time_type() -> dict:
	return {"type": "long", "logicalType": "time-micros"}


def avro_type(fieldtype: str) -> Any:
	"""The Avro type of a scalar Frappe fieldtype, or None when it is not streamed."""
	if fieldtype in STRING_FIELDTYPES:
		return "string"
	if fieldtype in DOUBLE_FIELDTYPES:
		return "double"
	return {
		"Int": "int",
		"Long Int": "long",
		"Check": "boolean",
		"Currency": decimal_type(),
		"Date": date_type(),
		"Datetime": datetime_type(),
		"Time": time_type(),
	}.get(fieldtype)


def record_name(doctype: str) -> str:
	"""`Sales Invoice` -> `SalesInvoice`; `Stock-Entry 2` -> `StockEntry2`; leading digit -> `D…`."""
	name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", doctype) if part)
	return name if name[:1].isalpha() else f"D{name}"


def document_field(fieldname: str, fieldtype: str, doc: str, child_record: dict | None = None) -> dict | None:
	"""The Avro field of a Frappe field, following the optionality rule above; None if not streamed."""
	if fieldtype in TABLE_FIELDTYPES:
		if child_record is None:
			return None
		return {
			"name": fieldname,
			"type": {"type": "array", "items": child_record},
			"default": [],
			"doc": doc,
		}
	kind = avro_type(fieldtype)
	if kind is None:
		return None
	if kind == "boolean":
		return {"name": fieldname, "type": "boolean", "default": False, "doc": doc}
	return {"name": fieldname, "type": ["null", kind], "default": None, "doc": doc}


def identity_fields(child: bool) -> list[dict]:
	"""The fields every document (name, docstatus) or child row (name, idx) record starts with."""
	if child:
		return [
			{"name": "name", "type": "string", "doc": "Row name (a hash); stable for the life of the row."},
			{"name": "idx", "type": "int", "doc": "Position of the row in its table, from 1."},
		]
	return [
		{"name": "name", "type": "string", "doc": "Document name (ID)."},
		{"name": "docstatus", "type": "int", "doc": "0 draft, 1 submitted, 2 cancelled."},
	]
