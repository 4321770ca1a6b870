"""Frappe's type-annotation block for a doctype JSON, computed without Frappe.

Mirrors `frappe/types/exporter.py` (v15): the block Frappe writes into a controller
when `export_python_type_annotations = True`. The structural test compares each
controller's block with this, so the JSON and the controller cannot drift apart.
"""

from __future__ import annotations

import json
import textwrap
from keyword import iskeyword
from pathlib import Path

NON_NULLABLE = {
	"Check",
	"Currency",
	"Float",
	"Int",
	"Percent",
	"Rating",
	"Select",
	"Table",
	"Table MultiSelect",
}
# fieldtypes that exist as attributes of frappe.types.DF (frappe/types/DF.py, v15)
DF_TYPES = {
	"Data", "Text", "Autocomplete", "Attach", "AttachImage", "Barcode", "Check", "Code", "Color",
	"Currency", "Date", "Datetime", "Duration", "DynamicLink", "Float", "HTMLEditor", "Int", "JSON",
	"Link", "LongText", "MarkdownEditor", "Password", "Percent", "Phone", "ReadOnly", "Rating",
	"Select", "SmallText", "TextEditor", "Time", "Table", "TableMultiSelect",
}  # fmt: skip
APP_DOCTYPE_MODULE = "erpnext_streaming.erpnext_streaming.doctype"


def scrub(name: str) -> str:
	return name.replace(" ", "_").replace("-", "_").lower()


def _python_type(field: dict, imports: set[str]) -> str | None:
	fieldtype = field["fieldtype"].replace(" ", "")
	if field["fieldtype"] == "Select":
		definition = "DF.Literal"
	elif fieldtype in DF_TYPES:
		definition = f"DF.{fieldtype}"
	else:
		return None
	if field["fieldtype"] in ("Table", "Table MultiSelect") and field.get("options"):
		child = field["options"]
		cls = child.replace(" ", "")
		imports.add(f"from {APP_DOCTYPE_MODULE}.{scrub(child)}.{scrub(child)} import {cls}")
		definition += f"[{cls}]"
	elif field["fieldtype"] == "Select":
		options = [o.strip() for o in field["options"].split("\n")] if field.get("options") else None
		definition += json.dumps(options) if options else "[None]"
	if field["fieldtype"] not in NON_NULLABLE and not field.get("reqd"):
		definition += " | None"
	return definition


def type_block(doctype_json: dict, indent: str = "\t") -> str:
	imports = {"from frappe.types import DF"}
	types = {}
	for field in doctype_json["fields"]:
		if iskeyword(field["fieldname"]):
			continue
		if t := _python_type(field, imports):
			types[field["fieldname"]] = t
	if doctype_json.get("istable"):
		for parent_field in ("parent", "parentfield", "parenttype"):
			types[parent_field] = "DF.Data"
	if doctype_json.get("autoname") == "autoincrement":
		types["name"] = "DF.Int | None"
	fields = "\n".join(sorted(f"{k}: {v}" for k, v in types.items()))
	block = (
		"# begin: auto-generated types\n"
		"# This code is auto-generated. Do not modify anything in this block.\n\n"
		"from typing import TYPE_CHECKING\n\n"
		"if TYPE_CHECKING:\n"
		f"{textwrap.indent(chr(10).join(sorted(imports)), indent)}\n\n"
		f"{textwrap.indent(fields, indent)}\n"
		"# end: auto-generated types"
	)
	return textwrap.indent(block, indent)


def load(path: Path) -> dict:
	return json.loads(path.read_text())
