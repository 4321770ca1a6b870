"""Create the app's tables in MariaDB from its own doctype JSONs, the way Frappe does.

Mirrors frappe/database/mariadb/schema.py `MariaDBTable.create` and
frappe/database/schema.py (v15): the standard columns, one column per data field typed
by Frappe's MariaDB `type_map`, `index <field>(<field>)` for search_index fields,
`unique` for unique ones, parent columns for child tables, and for `autoname:
autoincrement` a bigint name plus the `<doctype>_id_seq` sequence (nocache, nocycle).
"""

from __future__ import annotations

import json
from pathlib import Path

APP_ROOT = Path(__file__).resolve().parents[2] / "erpnext_streaming"
DOCTYPE_DIR = APP_ROOT / "erpnext_streaming" / "doctype"
VARCHAR_LEN = 140

# frappe/database/mariadb/database.py setup_type_map (v15)
TYPE_MAP: dict[str, tuple[str, str]] = {
	"Currency": ("decimal", "21,9"),
	"Int": ("int", "11"),
	"Long Int": ("bigint", "20"),
	"Float": ("decimal", "21,9"),
	"Percent": ("decimal", "21,9"),
	"Check": ("int", "1"),
	"Small Text": ("text", ""),
	"Long Text": ("longtext", ""),
	"Code": ("longtext", ""),
	"Text Editor": ("longtext", ""),
	"Markdown Editor": ("longtext", ""),
	"HTML Editor": ("longtext", ""),
	"Date": ("date", ""),
	"Datetime": ("datetime", "6"),
	"Time": ("time", "6"),
	"Text": ("text", ""),
	"Data": ("varchar", str(VARCHAR_LEN)),
	"Link": ("varchar", str(VARCHAR_LEN)),
	"Dynamic Link": ("varchar", str(VARCHAR_LEN)),
	"Password": ("text", ""),
	"Select": ("varchar", str(VARCHAR_LEN)),
	"Rating": ("decimal", "3,2"),
	"Read Only": ("varchar", str(VARCHAR_LEN)),
	"Attach": ("text", ""),
	"Attach Image": ("text", ""),
	"Signature": ("longtext", ""),
	"Color": ("varchar", str(VARCHAR_LEN)),
	"Barcode": ("longtext", ""),
	"Geolocation": ("longtext", ""),
	"Duration": ("decimal", "21,9"),
	"Icon": ("varchar", str(VARCHAR_LEN)),
	"Phone": ("varchar", str(VARCHAR_LEN)),
	"Autocomplete": ("varchar", str(VARCHAR_LEN)),
	"JSON": ("json", ""),
}
OPTIONAL_COLUMNS = ("_user_tags", "_comments", "_assign", "_liked_by")


def doctype_jsons() -> dict[str, dict]:
	return {(d := json.loads(p.read_text()))["name"]: d for p in sorted(DOCTYPE_DIR.glob("*/*.json"))}


def scrub(name: str) -> str:
	return name.replace(" ", "_").replace("-", "_").lower()


def column_type(field: dict) -> str | None:
	if field["fieldtype"] not in TYPE_MAP:
		return None
	coltype, size = TYPE_MAP[field["fieldtype"]]
	return f"{coltype}({size})" if size else coltype


def _escape(value: str) -> str:
	return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def column_definition(field: dict) -> str | None:
	definition = column_type(field)
	if not definition:
		return None
	default = field.get("default")
	if field["fieldtype"] in ("Check", "Int"):
		definition += f" not null default {int(float(default or 0))}"
	elif field["fieldtype"] in ("Currency", "Float", "Percent"):
		definition += f" not null default {float(default or 0)}"
	elif default and not str(default).startswith(":") and default not in ("Today", "__user", "now"):
		definition += f" default {_escape(str(default))}"
	if field.get("unique") and definition.split("(")[0] not in ("text", "longtext"):
		definition += " unique"
	return definition


def composite_indexes(doctype_name: str) -> dict[str, tuple[str, ...]]:
	"""Indexes a controller's `on_doctype_update` creates (Frappe runs it after the table)."""
	from erpnext_streaming.constants import BUNDLE_DOCTYPE, EVENT_LOG_DOCTYPE
	from erpnext_streaming.delivery.bundles import BUNDLE_INDEXES
	from erpnext_streaming.outbox.outcomes import EVENT_LOG_INDEXES
	from harness.erpnext_tables import ERPNEXT_INDEXES

	if doctype_name == EVENT_LOG_DOCTYPE:
		return EVENT_LOG_INDEXES
	if doctype_name == BUNDLE_DOCTYPE:
		return BUNDLE_INDEXES
	return ERPNEXT_INDEXES.get(doctype_name, {})


def create_table_sql(doctype: dict) -> list[str]:
	"""The statements Frappe runs to create this doctype's table (and sequence)."""
	if doctype.get("issingle"):
		return []
	name = doctype["name"]
	statements = []
	name_column = f"name varchar({VARCHAR_LEN}) primary key"
	if doctype.get("autoname") == "autoincrement":
		statements.append(f"create sequence if not exists `{scrub(name)}_id_seq` nocache nocycle")
		name_column = "name bigint primary key"
	definitions = []
	fields = [f for f in doctype["fields"] if not f.get("is_virtual")]
	if not doctype.get("istable"):
		fields += [{"fieldname": c, "fieldtype": "Text"} for c in OPTIONAL_COLUMNS]
	for field in fields:
		if d := column_definition(field):
			definitions.append(f"`{field['fieldname']}` {d}")
	for field in fields:
		coltype = column_type(field)
		if (
			field.get("search_index")
			and not field.get("unique")
			and coltype
			and coltype not in ("text", "longtext")
		):
			definitions.append(f"index `{field['fieldname']}`(`{field['fieldname']}`)")
	# what the controller's on_doctype_update adds with frappe.db.add_index
	for index_name, columns in composite_indexes(name).items():
		definitions.append(f"index `{index_name}`({', '.join(f'`{c}`' for c in columns)})")
	if doctype.get("istable"):
		definitions += [
			f"parent varchar({VARCHAR_LEN})",
			f"parentfield varchar({VARCHAR_LEN})",
			f"parenttype varchar({VARCHAR_LEN})",
			"index parent(parent)",
		]
	else:
		definitions.append("index modified(modified)")
	statements.append(
		f"""create table `tab{name}` (
			{name_column},
			creation datetime(6),
			modified datetime(6),
			modified_by varchar({VARCHAR_LEN}),
			owner varchar({VARCHAR_LEN}),
			docstatus int(1) not null default '0',
			idx int(8) not null default '0',
			{", ".join(definitions)})
			ENGINE={doctype.get("engine") or "InnoDB"}
			ROW_FORMAT=DYNAMIC
			CHARACTER SET=utf8mb4
			COLLATE=utf8mb4_unicode_ci"""
	)
	return statements


def create_app_tables(cursor, extra_doctypes: tuple[dict, ...] = ()) -> list[str]:
	"""Create every non-single doctype table of the app (and `extra_doctypes`, e.g. the
	ERPNext subset in harness/erpnext_tables.py) plus tabSingles; returns table names."""
	created = []
	for doctype in (*doctype_jsons().values(), *extra_doctypes):
		for statement in create_table_sql(doctype):
			cursor.execute(statement)
		if not doctype.get("issingle"):
			created.append(f"tab{doctype['name']}")
	# Frappe stores Single doctypes here (frappe/core/doctype/doctype/boilerplate)
	cursor.execute(
		"create table if not exists `tabSingles` (doctype varchar(140), field varchar(140), value longtext,"
		" index singles_doctype_field_index(doctype, field)) ENGINE=InnoDB CHARACTER SET=utf8mb4"
	)
	return created
