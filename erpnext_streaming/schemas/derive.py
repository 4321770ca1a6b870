"""Event schemas derived from doctype meta, for submittable doctypes an admin adds to the catalog.

`derive_schema` takes `frappe.get_meta(doctype).fields` (objects, dicts or tuples) and returns
an `EventSchema` shaped like the shipped ones, typed by `schemas.types`. Fields that cannot
stream (unknown fieldtypes, tables without child meta, non-Avro names) are left out and listed
in the record's `doc`. The version is numbered by content (`0x40000000 |` 30 bits of the
CRC-64-AVRO fingerprint of the canonical form WITH logical types; see docs/event-catalog.md):
the same fields give the same version on any site, never a hand-numbered one. Logical types
are kept because the specification's Parsing Canonical Form strips them, and a Date field
turned Int would keep its version.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from fastavro.schema import fingerprint, to_parsing_canonical_form

from erpnext_streaming.schemas import types
from erpnext_streaming.schemas.registry import DOCTYPE_ATTR, EventSchema, default_registry, expand

DERIVED_VERSION_BASE = 1 << 30
ENVELOPE_VERSION = 1
_IDENTITY = frozenset(("name", "docstatus", "idx"))


class FieldSpec(NamedTuple):
	fieldname: str
	fieldtype: str
	options: str = ""
	label: str = ""


def field_spec(field: Any) -> FieldSpec:
	"""A meta field (DocField, dict or tuple) as a FieldSpec."""
	if isinstance(field, tuple):
		return FieldSpec(*(str(part or "") for part in field[:4]))
	get = field.get if isinstance(field, Mapping) else lambda key: getattr(field, key, None)
	return FieldSpec(*(str(get(key) or "") for key in FieldSpec._fields))


def child_doctypes(fields: Iterable[Any]) -> list[str]:
	"""The child doctypes of the Table fields: the metas to pass as `child_fields`."""
	specs = (field_spec(f) for f in fields)
	return list(
		dict.fromkeys(s.options for s in specs if s.fieldtype in types.TABLE_FIELDTYPES and s.options)
	)


_PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
_LOGICAL_KEYS = ("type", "logicalType", "precision", "scale")
_PLACEHOLDER = "erpnext_streaming_logical.T{}"


def logical_canonical_form(schema: dict) -> str:
	"""The Parsing Canonical Form, but each primitive with a logical type written whole:
	`{"type":"int","logicalType":"date"}`, `{"type":"bytes","logicalType":"decimal",
	"precision":21,"scale":9}` (keys in that order, as [ORDER] puts `type` first).

	fastavro writes the specification's form; a logical type is handed to it as a named
	`fixed` placeholder (kept by [STRIP], written once where defined), swapped back after.
	Derived schemas put logical types on primitives only (`schemas.types`).
	"""
	kept: dict[str, str] = {}

	def mark(node: Any) -> Any:
		if isinstance(node, list):
			return [mark(n) for n in node]
		if not isinstance(node, dict):
			return node
		if "logicalType" in node and node.get("type") in _PRIMITIVES:
			logical = {key: node[key] for key in _LOGICAL_KEYS if key in node}
			name = _PLACEHOLDER.format(len(kept))
			kept[name] = json.dumps(logical, ensure_ascii=False, separators=(",", ":"))
			return {"type": "fixed", "name": name, "size": 0}
		return {k: mark(v) if k in ("type", "fields", "items", "values") else v for k, v in node.items()}

	text = to_parsing_canonical_form(mark(schema))
	for name, logical in kept.items():
		text = text.replace(f'{{"name":"{name}","type":"fixed","size":0}}', logical)
	return text


def derived_version(schema: dict) -> int:
	"""The content-derived version of a schema (see the module doc)."""
	digest = bytes.fromhex(fingerprint(logical_canonical_form(schema), "CRC-64-AVRO"))
	return DERIVED_VERSION_BASE | (int.from_bytes(digest[:4], "little") & (DERIVED_VERSION_BASE - 1))


def derive_schema(
	doctype: str, fields: Iterable[Any], child_fields: Mapping[str, Iterable[Any]] | None = None
) -> EventSchema:
	"""The event schema of an admin-added doctype, from its meta (see the module doc).

	Cached on the field definitions: the same meta gives the same `EventSchema` object.
	"""
	children = tuple(sorted((child, tuple(map(field_spec, f))) for child, f in (child_fields or {}).items()))
	return _derive(doctype, tuple(map(field_spec, fields)), children)


@functools.lru_cache(maxsize=256)
def _derive(doctype: str, fields: tuple[FieldSpec, ...], children: tuple) -> EventSchema:
	child_specs = dict(children)
	defined: set[str] = set()

	def record(name: str, specs: tuple[FieldSpec, ...], child: bool, what: str) -> dict:
		out, skipped = types.identity_fields(child), []
		for spec in specs:
			child_record = None
			if spec.fieldtype in types.TABLE_FIELDTYPES and spec.options in child_specs:
				child_name = types.record_name(spec.options)
				if child_name in defined:  # a second table of the same child doctype: refer by name
					child_record = child_name
				else:
					defined.add(child_name)
					child_record = record(
						child_name, child_specs[spec.options], True, f"A {spec.options} row."
					)
			field = None
			if spec.fieldname not in _IDENTITY and types.AVRO_NAME.match(spec.fieldname):
				doc = f"{spec.label or spec.fieldname} ({spec.fieldtype}{': ' + spec.options if spec.options else ''})."
				field = types.document_field(spec.fieldname, spec.fieldtype, doc, child_record)
			if field is None:
				if spec.fieldname not in _IDENTITY and spec.fieldtype not in types.SKIPPED_FIELDTYPES:
					skipped.append(spec.fieldname)
			elif spec.fieldname not in {f["name"] for f in out}:
				out.append(field)
		if skipped:
			what += f" Not streamed: {', '.join(skipped)}."
		return {"type": "record", "name": name, "doc": what, "fields": out}

	name = types.record_name(doctype)
	defined.add(name)
	document = record(name, fields, False, f"{doctype}, derived from its meta.")
	event = {
		"type": "record",
		"name": f"{name}Event",
		"namespace": types.NAMESPACE,
		"doc": f"A {doctype} event (submitted, cancelled, updated_after_submit); schema derived from the doctype's meta.",
		DOCTYPE_ATTR: doctype,
		"fields": [{"name": "document", "type": document, "doc": f"The {doctype} document."}],
	}
	schema = expand(event, default_registry().envelope(ENVELOPE_VERSION))
	return EventSchema.build(schema, doctype, derived_version(schema), f"derived:{doctype}")
