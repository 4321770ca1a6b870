"""Decode erpnext_streaming messages of any of the three encodings into `Event`s.

Which encoding a message uses: its `content-type` header (`application/avro`,
`application/avro; encoding=single-object`, `application/avro; encoding=confluent`);
without one, the first bytes (`C3 01` single-object, `00` Confluent, anything else
schemaless: an event record starts with the length of its 36-character event id, `0x48`).

Where the writer schema comes from:
- Confluent wire format: the registry, by the schema id in the message, through
  confluent_kafka's `AvroDeserializer` (pass `registry=` a `SchemaRegistryClient` or its
  configuration);
- single-object: the 8-byte fingerprint, looked up in a `SchemaStore` (every shipped
  `.avsc` version; add derived schemas of admin-added doctypes with `SchemaStore.add`);
- schemaless: the `schema_fingerprint` header (else `schema_name` + `schema_version`),
  looked up the same way.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastavro import schemaless_reader

from erpnext_streaming.constants import PART_HEADER, PART_OF_HEADER, Encoding
from erpnext_streaming.schemas.registry import EventSchema, SchemaRegistry, default_registry

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = 0


class DecodeError(ValueError):
	"""A message that is not a decodable event (unknown schema, bad bytes, no registry)."""


@dataclass(frozen=True, slots=True)
class Event:
	"""One decoded event: the envelope fields, the record, and where it came from.

	`event_time` is an aware datetime (UTC); `sequence` is the company's gapless sequence
	(`es_company_sequence`), None when the header is missing; `late` is set by the
	`Reorderer` for an event released after its place in the order had passed.
	"""

	event_id: str
	event_type: str
	doctype: str
	name: str
	company: str
	event_time: datetime
	sequence: int | None
	record: dict = field(repr=False, compare=False)
	schema_name: str = ""
	schema_version: int = 0
	encoding: str = Encoding.SCHEMALESS
	emitted_at: datetime | None = None  # capture time: follows commit order, unlike event_time
	topic: str = ""
	partition: int | None = None
	offset: int | None = None
	late: bool = False

	@property
	def document(self) -> dict:
		return self.record.get("document") or {}

	@property
	def modified(self) -> datetime | None:
		return self.record.get("modified")

	@classmethod
	def from_record(cls, record: dict, sequence: int | None = None, **where: Any) -> Event:
		return cls(
			event_id=record["event_id"],
			event_type=record["event_type"],
			doctype=record["doctype"],
			name=record["name"],
			company=record["company"],
			event_time=record["event_time"],
			sequence=sequence,
			record=record,
			schema_name=record.get("schema_name") or "",
			schema_version=record.get("schema_version") or 0,
			emitted_at=record.get("emitted_at") or record["event_time"],
			**where,
		)


class SchemaStore:
	"""Writer schemas by CRC-64-AVRO fingerprint and by (name, version)."""

	def __init__(self, registry: SchemaRegistry | None = None, extra: Iterable[EventSchema] = ()):
		self._by_fingerprint: dict[str, EventSchema] = {}
		self._by_name: dict[tuple[str, int], EventSchema] = {}
		for schema in (registry or default_registry()).all():
			self.add(schema)
		for schema in extra:
			self.add(schema)

	def add(self, schema: EventSchema | dict) -> EventSchema:
		"""Add a schema: an `EventSchema`, or a self-contained schema dict (e.g. a derived
		schema exported from a site; its version defaults to the content-derived one)."""
		if isinstance(schema, dict):
			from erpnext_streaming.schemas.derive import derived_version

			doctype = schema.get("erpnext.doctype", "")
			schema = EventSchema.build(schema, doctype, derived_version(schema), "added")
		self._by_fingerprint[schema.fingerprint] = schema
		self._by_name[(schema.name, schema.version)] = schema
		return schema

	def by_fingerprint(self, fingerprint: str) -> EventSchema | None:
		return self._by_fingerprint.get(fingerprint)

	def by_name(self, name: str, version: int) -> EventSchema | None:
		return self._by_name.get((name, version))


def header_map(headers: Mapping[str, Any] | Sequence[tuple[str, Any]] | None) -> dict[str, str]:
	"""Kafka headers (list of pairs, bytes values) as a dict of strings."""
	if not headers:
		return {}
	pairs = headers.items() if isinstance(headers, Mapping) else headers
	return {
		k: (v.decode("utf-8", "replace") if isinstance(v, bytes | bytearray) else str(v or ""))
		for k, v in pairs
	}


def encoding_of(value: bytes, headers: Mapping[str, str]) -> str:
	"""The encoding of a message, from its content-type header, else its first bytes."""
	content_type = headers.get("content-type", "")
	for encoding, known in Encoding.CONTENT_TYPE.items():
		if content_type == known:
			return encoding
	if value[:2] == SINGLE_OBJECT_MARKER:
		return Encoding.SINGLE_OBJECT
	if value[:1] == bytes((CONFLUENT_MAGIC,)):
		return Encoding.CONFLUENT
	return Encoding.SCHEMALESS


class Decoder:
	"""`decode(value, headers, topic=...) -> Event` for all three encodings (module doc).

	`registry`: a `confluent_kafka.schema_registry.SchemaRegistryClient`, or its
	configuration dict (`{"url": ...}`); needed only for Confluent-framed messages.
	"""

	def __init__(self, schemas: SchemaStore | None = None, registry: Any = None):
		self.schemas = schemas or SchemaStore()
		self._registry = registry
		self._deserializer = None

	def decode(
		self,
		value: bytes | None,
		headers: Any = None,
		topic: str = "",
		partition: int | None = None,
		offset: int | None = None,
	) -> Event:
		if not value:
			raise DecodeError("the message has no value")
		headers = header_map(headers)
		if PART_HEADER in headers:
			raise DecodeError(
				f"part {headers[PART_HEADER]} of event {headers.get(PART_OF_HEADER, '-')}: "
				"reassemble the parts first (consumer.Reassembler; EventConsumer does)"
			)
		encoding = encoding_of(value, headers)
		if encoding == Encoding.CONFLUENT:
			record = self._confluent(value, topic, headers)
		elif encoding == Encoding.SINGLE_OBJECT:
			schema = self._schema(value[2:10].hex(), "", 0)
			record = self._read(value[10:], schema)
		else:
			schema = self._schema(
				headers.get("schema_fingerprint", ""),
				headers.get("schema_name", ""),
				int(headers.get("schema_version") or 0),
			)
			record = self._read(value, schema)
		sequence = headers.get("es_company_sequence")
		return Event.from_record(
			record,
			int(sequence) if sequence and sequence.isdigit() else None,
			encoding=encoding,
			topic=topic,
			partition=partition,
			offset=offset,
		)

	def _schema(self, fingerprint: str, name: str, version: int) -> EventSchema:
		schema = self.schemas.by_fingerprint(fingerprint) if fingerprint else None
		schema = schema or (self.schemas.by_name(name, version) if name else None)
		if schema is None:
			raise DecodeError(
				f"unknown writer schema (fingerprint {fingerprint or '-'}, {name or '-'} v{version}): "
				"add it with SchemaStore.add, or use the Confluent encoding"
			)
		return schema

	@staticmethod
	def _read(body: bytes, schema: EventSchema) -> dict:
		try:
			return schemaless_reader(io.BytesIO(body), schema.parsed, None)
		except Exception as e:  # fastavro: EOFError, ValueError, ...
			raise DecodeError(f"{schema.label} cannot read the message: {type(e).__name__}: {e}") from e

	def _confluent(self, value: bytes, topic: str, headers: Mapping[str, str]) -> dict:
		if self._registry is None:
			raise DecodeError(
				"a Confluent wire-format message needs a schema registry (Decoder(registry=...))"
			)
		if self._deserializer is None:
			from confluent_kafka.schema_registry.avro import AvroDeserializer

			client = self._registry
			if isinstance(client, dict):
				from confluent_kafka.schema_registry import SchemaRegistryClient

				client = SchemaRegistryClient.new_client(dict(client))
			self._deserializer = AvroDeserializer(client)
		from confluent_kafka.serialization import MessageField, SerializationContext

		try:
			return self._deserializer(value, SerializationContext(topic, MessageField.VALUE))
		except Exception as e:
			raise DecodeError(f"Confluent message cannot be read: {type(e).__name__}: {e}") from e
