"""Builders compiled once per event schema object; shipped doctypes found by (doctype, version)."""

from __future__ import annotations

from erpnext_streaming.emitters.builders.compiler import Builder, record_builder
from erpnext_streaming.schemas import EventSchema, get_event_schema

_by_schema: dict[int, tuple[EventSchema, Builder]] = {}


def document_builder(schema: EventSchema) -> Builder:
	"""The builder of a schema's `document` record, compiled once per schema object."""
	entry = _by_schema.get(id(schema))
	if entry is None or entry[0] is not schema:
		entry = _by_schema[id(schema)] = (schema, record_builder(schema.document_schema))
	return entry[1]


def get_builder(doctype: str, version: int = 0) -> Builder:
	"""`to_dict(doc) -> dict` for a shipped doctype's schema version (0 = newest).

	Raises `schemas.UnknownSchemaError` for a doctype without a shipped schema (admin-added
	doctypes use `derive.derive_schema` and `generic_to_dict`).
	"""
	return document_builder(get_event_schema(doctype, version))


def generic_to_dict(doc, schema: EventSchema) -> dict:
	"""Build the `document` record of any event schema, e.g. one from `derive_schema`."""
	return document_builder(schema)(doc)
