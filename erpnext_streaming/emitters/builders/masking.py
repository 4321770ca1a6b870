"""Masking: replace chosen text fields of a document record before it is encoded.

Which fields may be masked: the optional text fields (`["null", "string"]`) of the
document record and of its child rows, child fields written `items.item_name`
(`maskable_fields`). Only those, so a masked record stays valid for the same schema:
- mode "Keyed hash": the value becomes the lowercase hex HMAC-SHA256 of its UTF-8 text
  under the site's masking key: a string, deterministic for one key (consumers can still
  join and count distinct values) and unguessable without the key;
- mode "Drop": the value becomes null, which every maskable field allows.
Numbers, dates, checks and identity fields (`name`, `idx`) cannot be masked: a hash is
not a number, and dropping a required field would break the record. Null stays null.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any

from erpnext_streaming.schemas import EventSchema, get_event_schema
from erpnext_streaming.schemas.errors import BuildError
from erpnext_streaming.validation import MASK_MODES

KEYED_HASH, DROP = MASK_MODES
_OPTIONAL_TEXT = ["null", "string"]


def maskable_fields_of(schema: EventSchema) -> frozenset[str]:
	"""The fields `mask` accepts for this schema: optional text fields, children as `table.field`."""
	names, rows = set(), {}
	for field in schema.document_schema["fields"]:
		kind = field["type"]
		if kind == _OPTIONAL_TEXT:
			names.add(field["name"])
		elif isinstance(kind, dict) and kind.get("type") == "array":
			row = (
				rows.setdefault(kind["items"]["name"], kind["items"])
				if isinstance(kind["items"], dict)
				else None
			)
			row = row or rows.get(kind["items"], {"fields": ()})  # a child record referred to by name
			names.update(f"{field['name']}.{f['name']}" for f in row["fields"] if f["type"] == _OPTIONAL_TEXT)
	return frozenset(names)


def maskable_fields(doctype: str, version: int = 0) -> frozenset[str]:
	"""Maskable fields of a shipped doctype's schema (for settings validation)."""
	return maskable_fields_of(get_event_schema(doctype, version))


def _plan(masked_fields: Iterable[str]) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
	top, children = set(), {}
	for path in masked_fields:
		table, _, child = path.partition(".")
		if child:
			children.setdefault(table, set()).add(child)
		else:
			top.add(table)
	return frozenset(top), {t: frozenset(c) for t, c in children.items()}


def _masker(mode: str, key: bytes):
	if mode == DROP:
		return lambda value: None
	if mode != KEYED_HASH:
		raise BuildError(f"mask mode must be one of {', '.join(MASK_MODES)}, not {mode!r}")
	if not key:
		raise BuildError("masking with a keyed hash needs a non-empty key")
	key = key.encode() if isinstance(key, str) else bytes(key)
	return lambda value: hmac.digest(key, value.encode("utf-8"), "sha256").hex()


def _mask_row(row: dict, fields: frozenset[str], replace, prefix: str) -> dict:
	out = dict(row)
	for fieldname in fields:
		value = out.get(fieldname)
		if value is None:
			continue
		if fieldname in ("name", "idx") or not isinstance(value, str):
			raise BuildError(
				"cannot be masked: only optional text fields can (see maskable_fields)", prefix + fieldname
			)
		out[fieldname] = replace(value)
	return out


def mask(document: dict, masked_fields: frozenset[str], mode: str, key: bytes) -> dict:
	"""A copy of the document record with `masked_fields` hashed or dropped; the input is not changed.

	Fields the record does not have are ignored (settings validation refuses unknown ones);
	a listed field holding a non-text value raises `BuildError`.
	"""
	if not masked_fields:
		return document
	replace = _masker(mode, key)
	top, children = _plan(masked_fields)
	out = _mask_row(document, top, replace, "")
	for table, fields in children.items():
		rows = out.get(table)
		if rows:
			out[table] = [_mask_row(row, fields, replace, f"{table}[{i}].") for i, row in enumerate(rows)]
	return out
