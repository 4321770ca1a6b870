"""Avro Parsing Canonical Form and the CRC-64-AVRO fingerprint (Avro 1.11 specification).

`canonical_form(schema)` follows the specification's transformation rules: PRIMITIVES
(`{"type": "int"}` -> `"int"`), FULLNAMES (names made full, `namespace` dropped),
STRIP (only `type`, `name`, `fields`, `symbols`, `items`, `values`, `size` kept),
ORDER (in that order), STRINGS, INTEGERS and WHITESPACE (no whitespace outside strings).
A named type is written out where it is first defined and referred to by its full name
afterwards.

`canonical_form(schema, logical=True)` is this project's stricter variant: it also keeps
`logicalType`, `precision` and `scale` (after `size`). The specification's form ignores
logical types, so two schemas that differ only in, say, a `date` versus an `int` field
share a fingerprint; derived schema versions (`schemas.derive`) are numbered from the
stricter form so such a change still makes a new version.

`fingerprint(text)` is CRC-64-AVRO ("Rabin") of the UTF-8 bytes, as 16 lowercase hex
digits of the 8 bytes in little-endian order: the byte order of Avro single-object
encoding, of Java's `SchemaNormalization.parsingFingerprint("CRC-64-AVRO", ...)` and of
`fastavro.schema.fingerprint(..., "CRC-64-AVRO")`.
"""

from __future__ import annotations

import json
from typing import Any

PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
NAMED = frozenset(("record", "error", "enum", "fixed"))
_KEYS = ("name", "type", "fields", "symbols", "items", "values", "size")
_LOGICAL_KEYS = ("logicalType", "precision", "scale")


def _json(value: Any) -> str:
	# [STRINGS]: UTF-8 characters, not \uXXXX escapes; [WHITESPACE]: none
	return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# CRC-64-AVRO: the specification's EMPTY = 0xc15d213aa4d7a795 is both the reflected
# polynomial and the initial value.
EMPTY_64 = 0xC15D213AA4D7A795


def _table() -> tuple[int, ...]:
	table = []
	for i in range(256):
		fp = i
		for _ in range(8):
			fp = (fp >> 1) ^ (EMPTY_64 & -(fp & 1))
		table.append(fp)
	return tuple(table)


_FP_TABLE = _table()


def crc64_avro(data: bytes) -> int:
	fp = EMPTY_64
	for byte in data:
		fp = (fp >> 8) ^ _FP_TABLE[(fp ^ byte) & 0xFF]
	return fp


def fingerprint(canonical: str) -> str:
	"""CRC-64-AVRO of a canonical form: 16 lowercase hex digits, little-endian bytes."""
	return crc64_avro(canonical.encode("utf-8")).to_bytes(8, "little").hex()


def fullname(name: str, namespace: str | None) -> str:
	return name if "." in name or not namespace else f"{namespace}.{name}"


def canonical_form(schema: Any, logical: bool = False) -> str:
	"""The Parsing Canonical Form of a schema given as parsed JSON (dict, list or str)."""
	return _canon(schema, None, set(), _KEYS + _LOGICAL_KEYS if logical else _KEYS)


def _canon(schema: Any, namespace: str | None, seen: set[str], keys: tuple[str, ...]) -> str:
	if isinstance(schema, str):
		return _json(schema if schema in PRIMITIVES else fullname(schema, namespace))
	if isinstance(schema, list):
		return "[" + ",".join(_canon(branch, namespace, seen, keys) for branch in schema) + "]"
	kind = schema["type"]
	if not isinstance(kind, str) or (kind in PRIMITIVES and not any(k in schema for k in keys[len(_KEYS) :])):
		# [PRIMITIVES]: {"type": "int"} (and {"type": {...}}) collapse to their type
		return _canon(kind, namespace, seen, keys)
	if kind in NAMED:
		name = fullname(schema["name"], schema.get("namespace", namespace))
		if name in seen:
			return _json(name)
		seen.add(name)
		namespace = name.rpartition(".")[0] or None
	parts = []
	for key in keys:
		if key not in schema:
			continue
		value = schema[key]
		if key == "name" and kind in NAMED:
			value = _json(name)
		elif key == "fields":
			value = "[" + ",".join(_canon_field(f, namespace, seen, keys) for f in value) + "]"
		elif key in ("items", "values"):
			value = _canon(value, namespace, seen, keys)
		else:
			value = _json(value)
		parts.append(f'"{key}":{value}')
	return "{" + ",".join(parts) + "}"


def _canon_field(field: dict, namespace: str | None, seen: set[str], keys: tuple[str, ...]) -> str:
	return f'{{"name":{_json(field["name"])},"type":{_canon(field["type"], namespace, seen, keys)}}}'
