"""Avro binary encoding of event records (schemaless: the schema travels in the headers).

`AvroEventSerializer(schema)` has confluent-kafka's serializer shape, `(record, ctx) ->
bytes`: `fastavro.schemaless_writer` with the schema parsed once at load (Avro 1.11
specification, "Binary Encoding"). `headers(schema)` gives the schema headers every message
carries.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from fastavro import schemaless_writer

from erpnext_streaming.schemas.errors import EncodeError
from erpnext_streaming.schemas.registry import EventSchema


def headers(schema: EventSchema) -> list[tuple[str, bytes]]:
	"""`schema_name`, `schema_version`, `schema_fingerprint` (CRC-64-AVRO hex) as Kafka headers."""
	return [
		("schema_name", schema.name.encode()),
		("schema_version", str(schema.version).encode()),
		("schema_fingerprint", schema.fingerprint.encode()),
	]


class AvroEventSerializer:
	"""Encode event records of one schema: `serializer(record, ctx=None) -> bytes`.

	Raises `EncodeError` (with fastavro's reason) for a record the schema refuses. Thread
	safe: each call writes to its own buffer.
	"""

	__slots__ = ("_parsed", "headers", "schema")

	def __init__(self, schema: EventSchema):
		self.schema = schema
		self._parsed = schema.parsed
		self.headers = headers(schema)

	def __call__(self, record: dict, ctx: Any = None) -> bytes:
		buffer = BytesIO()
		try:
			schemaless_writer(buffer, self._parsed, record)
		except Exception as e:  # fastavro raises ValueError, TypeError, KeyError, ... per type
			raise EncodeError(f"{self.schema.label} refuses the record: {e}") from e
		return buffer.getvalue()
