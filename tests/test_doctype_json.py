"""The app's doctype JSONs are structurally sound and agree with their controllers."""

from __future__ import annotations

import ast
import json
import textwrap
from pathlib import Path

import pytest
from doctype_types import type_block
from harness.schema import DOCTYPE_DIR

# frappe/model/__init__.py (v15): data_fieldtypes + no_value_fields + Table MultiSelect
FRAPPE_FIELDTYPES = {
	"Currency", "Int", "Long Int", "Float", "Percent", "Check", "Small Text", "Long Text", "Code",
	"Text Editor", "Markdown Editor", "HTML Editor", "Date", "Datetime", "Time", "Text", "Data", "Link",
	"Dynamic Link", "Password", "Select", "Rating", "Read Only", "Attach", "Attach Image", "Signature",
	"Color", "Barcode", "Geolocation", "Duration", "Icon", "Phone", "Autocomplete", "JSON",
	"Section Break", "Column Break", "Tab Break", "HTML", "Table", "Table MultiSelect", "Button", "Image",
	"Fold", "Heading",
}  # fmt: skip
LAYOUT = {"Section Break", "Column Break", "Tab Break", "HTML", "Button", "Image", "Fold", "Heading"}
# frappe.model.document.Document API the controllers use, plus the standard columns
DOCUMENT_API = {
	"flags", "get", "set", "get_password", "append", "save", "db_set", "get_doc_before_save", "meta",
	"doctype", "name", "is_new", "run_method", "owner", "creation", "modified", "modified_by", "docstatus",
	"idx",
}  # fmt: skip

PATHS = sorted(DOCTYPE_DIR.glob("*/*.json"))
DOCTYPES = {p: json.loads(p.read_text()) for p in PATHS}


def test_the_app_ships_its_eleven_doctypes():
	assert {d["name"] for d in DOCTYPES.values()} == {
		"Streaming Settings", "Streaming Event Catalog", "Streaming Producer Property",
		"Streaming Event Log", "Streaming Company Sequence", "Streaming Backfill",
		"Streaming Delivery Bundle", "Streaming Delivery Cursor", "Streaming Delivery Receipt",
		"Streaming Emitted State", "Streaming Schema",
	}  # fmt: skip


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_doctype_json_is_structurally_sound(path: Path):
	doctype = DOCTYPES[path]
	assert doctype["doctype"] == "DocType"
	assert doctype["module"] == "ERPNext Streaming"
	assert path.stem == doctype["name"].lower().replace(" ", "_") == path.parent.name
	assert (path.parent / "__init__.py").exists()
	fieldnames = [f["fieldname"] for f in doctype["fields"]]
	assert len(fieldnames) == len(set(fieldnames)), "fieldnames are unique"
	assert doctype["field_order"] == fieldnames
	by_name = {f["fieldname"]: f for f in doctype["fields"]}
	for field in doctype["fields"]:
		where = f"{doctype['name']}.{field['fieldname']}"
		assert field["fieldtype"] in FRAPPE_FIELDTYPES, where
		assert field["fieldname"].isidentifier() and field["fieldname"] == field["fieldname"].lower(), where
		if field["fieldtype"] not in LAYOUT:
			assert field.get("label"), f"{where} has a label"
		if field["fieldtype"] in ("Link", "Table", "Table MultiSelect"):
			assert field.get("options"), f"{where} names the doctype it links to"
		if field["fieldtype"] in ("Table", "Table MultiSelect"):
			child = field["options"]
			child_json = (
				DOCTYPE_DIR / child.lower().replace(" ", "_") / f"{child.lower().replace(' ', '_')}.json"
			)
			assert child_json.exists() and json.loads(child_json.read_text()).get("istable") == 1, where
		if field["fieldtype"] == "Select":
			options = field.get("options", "").split("\n")
			assert [o for o in options if o], f"{where} has options"
			if "default" in field:
				assert field["default"] in options, f"{where} default is an option"
		if field["fieldtype"] == "Dynamic Link":
			assert by_name.get(field.get("options"), {}).get("fieldtype") == "Link", where
	if not doctype.get("istable"):
		assert doctype["permissions"], "a parent doctype grants permissions"
		assert {p["role"] for p in doctype["permissions"]} == {"System Manager"}


def test_help_texts_are_plain_text():
	"""The desk puts a description into the form as HTML (frappe/public/js/frappe/form/controls/
	base_input.js set_description): "<topic>-value" showed as "-value". A Code field names no
	language or one of controls/code.js set_language ("PEM" logged `Invalid language option`)."""
	for doctype in DOCTYPES.values():
		for item in (doctype, *doctype["fields"]):
			assert "<" not in item.get("description", ""), (doctype["name"], item.get("fieldname"))
			assert "db_set" not in item.get("description", ""), (doctype["name"], item.get("fieldname"))
		for field in doctype["fields"]:
			explained = field["fieldtype"] in LAYOUT or field["fieldtype"] == "Table" or field.get("hidden")
			if doctype["name"] in ("Streaming Settings", "Streaming Event Catalog") and not explained:
				assert field.get("description"), f"{doctype['name']}.{field['fieldname']} explains itself"
			if field["fieldtype"] == "Code":
				assert field.get("options", "") in ("", "JSON", "Python", "JS", "HTML", "Jinja"), field


def test_event_log_is_system_written_evidence():
	log = next(d for d in DOCTYPES.values() if d["name"] == "Streaming Event Log")
	assert log["autoname"] == "autoincrement" and log["in_create"] == 1
	data = [f for f in log["fields"] if f["fieldtype"] not in LAYOUT]
	assert all(f.get("read_only") for f in data), "every field is read-only"
	status = next(f for f in log["fields"] if f["fieldname"] == "status")
	assert status["options"].split("\n") == ["Queued", "Sent", "Failed", "Dead"] and status["search_index"]
	required = {
		"event_id", "reference_doctype", "reference_name", "event_type", "company", "topic", "message_key",
		"schema_name", "schema_version", "payload", "status", "attempts", "next_attempt_at", "last_error",
		"kafka_partition", "kafka_offset", "sent_at",
	}  # fmt: skip
	assert required <= {f["fieldname"] for f in data}
	assert next(f for f in data if f["fieldname"] == "reference_name")["search_index"] == 1
	assert not any(p.get("write") or p.get("create") for p in log["permissions"])


def _controller(path: Path) -> ast.ClassDef:
	return next(n for n in ast.parse(path.with_suffix(".py").read_text()).body if isinstance(n, ast.ClassDef))


def _declared_types(tree: ast.AST) -> tuple[dict[str, str], set[str]]:
	"""Annotations and imports inside `if TYPE_CHECKING:` (layout-insensitive: ruff may wrap lines)."""
	block = next(
		n for n in ast.walk(tree) if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
	)
	annotations = {n.target.id: ast.unparse(n.annotation) for n in block.body if isinstance(n, ast.AnnAssign)}
	imports = {ast.unparse(n) for n in block.body if isinstance(n, ast.ImportFrom)}
	return annotations, imports


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_controller_type_block_matches_the_json(path: Path):
	cls = _controller(path)
	assert cls.name == DOCTYPES[path]["name"].replace(" ", "")
	expected = _declared_types(ast.parse(textwrap.dedent(type_block(DOCTYPES[path]))))
	assert _declared_types(cls) == expected, "regenerate the auto-generated types block"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_controller_only_reads_fields_its_json_declares(path: Path):
	cls = _controller(path)
	fieldnames = {f["fieldname"] for f in DOCTYPES[path]["fields"]}
	methods = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
	used = {
		node.attr
		for node in ast.walk(cls)
		if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self"
	}
	used |= {
		node.args[0].value
		for node in ast.walk(cls)
		if isinstance(node, ast.Call)
		and isinstance(node.func, ast.Attribute)
		and node.func.attr in ("get", "get_password", "db_set")
		and isinstance(node.func.value, ast.Name)
		and node.func.value.id == "self"
		and node.args
		and isinstance(node.args[0], ast.Constant)
	}
	unknown = used - fieldnames - methods - DOCUMENT_API
	assert not unknown, f"{cls.name} uses {sorted(unknown)}, which its JSON does not declare"
