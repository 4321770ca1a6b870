"""The Avro codec of the capture core: builders, masking, envelope and encoding behind one object.

`emitters.capture` asks a codec five things (its `Codec` protocol): `build(doc, route)`
the masked document body, `envelope(doc, route, emitted_at)`, `tables(route)` the child
tables the body carries (read again at flush), `encode(event)` an `OutboxRecord` with the
Avro payload, and `dead_letter(event, reason)`. `AvroCodec` answers
them from the shipped schemas (`route.schema_version`, 0 = newest) or, for an
admin-added doctype, a schema derived from its meta. It is framework-free; `get_codec()`
at the bottom is the Frappe glue that gives it the site, the system time zone, the
masking key and the meta.

Masking key: HMAC-SHA256 of the label "erpnext_streaming:mask" under the site's
`encryption_key` (site_config.json, the key Frappe encrypts Password fields with), so it
is secret, stable for the site and needs no setting.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, tzinfo
from typing import Any

from erpnext_streaming.constants import Encoding, Status, spec_for
from erpnext_streaming.emitters.builders import document_builder, mask
from erpnext_streaming.emitters.envelope import UTC, build_envelope, uuid5
from erpnext_streaming.outbox.records import OutboxRecord
from erpnext_streaming.schemas import EventSchema, SchemaError, default_registry, get_event_schema
from erpnext_streaming.schemas.serializer import AvroEventSerializer

MASK_KEY_LABEL = b"erpnext_streaming:mask"


class AvroCodec:
	"""Build, mask and encode events of one site (see the module doc)."""

	def __init__(
		self,
		site: str,
		time_zone: tzinfo | None = None,
		mask_key: bytes = b"",
		derive: Callable[[str], EventSchema] | None = None,
		table_fields: Callable[[str], list[tuple[str, str]]] | None = None,
	):
		self.site = site
		self.time_zone = time_zone or UTC
		self.mask_key = mask_key
		self._derive = derive
		self._table_fields = table_fields
		self._shipped = frozenset(default_registry().shipped_doctypes())
		self._derived: dict[str, EventSchema] = {}

	def schema(self, route: Any) -> EventSchema:
		"""The route's schema: shipped (pinned version or newest), else derived from the meta."""
		if route.doctype in self._shipped:
			return get_event_schema(route.doctype, route.schema_version)
		schema = self._derived.get(route.doctype)
		if schema is None:
			if self._derive is None:
				raise SchemaError(
					f"no schema for {route.doctype}: not shipped and no meta to derive one from"
				)
			schema = self._derived[route.doctype] = self._derive(route.doctype)
		return schema

	def build(self, doc: Any, route: Any) -> dict:
		body = document_builder(self.schema(route))(doc)
		if route.masked_fields:
			body = mask(body, route.masked_fields, route.mask_mode, self.mask_key)
		return body

	def envelope(self, doc: Any, route: Any, emitted_at: datetime) -> dict:
		return build_envelope(
			doc,
			route.doctype,
			route.event_type,
			self.site,
			emitted_at,
			self.schema(route),
			time_zone=self.time_zone,
			state_fields=spec_for(route.doctype).state_fields,
		)

	def tables(self, route: Any) -> list[tuple[str, str]]:
		"""(fieldname, child doctype) of the doctype's child tables that the body carries."""
		if self._table_fields is None:
			return []
		fields = self.schema(route).document_schema["fields"]
		carried = {f["name"] for f in fields if isinstance(f["type"], dict) and f["type"]["type"] == "array"}
		return [(f, child) for f, child in self._table_fields(route.doctype) if f in carried]

	def serializer(self, schema: EventSchema) -> AvroEventSerializer:
		return AvroEventSerializer(schema)

	def encode(self, event: Any) -> OutboxRecord:
		"""The outbox record of a built event; raises `EncodeError` when the schema refuses it."""
		schema = self.schema(event.route)
		record = event.envelope  # the event's own dict: completed in place, not copied
		record["document"] = event.document
		payload = self.serializer(schema)(record)
		return self._record(event, schema, payload, Status.QUEUED, "")

	def dead_letter(self, event: Any, reason: str) -> OutboxRecord:
		"""A Dead outbox record carrying the reason; never raises."""
		try:
			schema = self.schema(event.route)
		except Exception:
			schema = None
		return self._record(event, schema, b"", Status.DEAD, reason)

	def _record(
		self, event: Any, schema: EventSchema | None, payload: bytes, status: str, error: str
	) -> OutboxRecord:
		envelope = event.envelope or {}
		route = event.route
		event_id = envelope.get("event_id") or uuid5(
			f"{event.doctype}|{event.name}|{route.event_type}|{event.modified or ''}"
		)
		when = envelope.get("event_time")
		# the Event Log stores naive datetimes in the site's time zone, like Frappe's own columns
		event_time = when.astimezone(self.time_zone).replace(tzinfo=None) if when else event.modified
		return OutboxRecord(
			event_id=event_id,
			event_type=route.event_type,
			reference_doctype=event.doctype,
			reference_name=event.name,
			company=event.company,
			event_time=event_time,
			topic=route.topic,
			message_key=event.company,
			schema_name=schema.name if schema else "",
			schema_version=schema.version if schema else 0,
			schema_fingerprint=schema.fingerprint if schema else "",
			payload=payload,
			status=status,
			last_error=error,
			encoding=getattr(route, "encoding", "") or Encoding.DEFAULT,
		)


def mask_key_from(encryption_key: str | bytes) -> bytes:
	"""The masking key of a site: HMAC-SHA256(encryption_key, MASK_KEY_LABEL)."""
	key = encryption_key.encode() if isinstance(encryption_key, str) else encryption_key
	return hmac.digest(key, MASK_KEY_LABEL, "sha256")


# -- Frappe glue ----------------------------------------------------------------------------

_CODEC_ATTR = "_erpnext_streaming_codec"


def derive_from_meta(doctype: str) -> EventSchema:
	"""The doctype's schema from its meta, stored by fingerprint (`schemas.stored`)."""
	import frappe
	import frappe.utils

	from erpnext_streaming.schemas import stored
	from erpnext_streaming.schemas.derive import child_doctypes, derive_schema

	fields = frappe.get_meta(doctype).fields
	children = {child: frappe.get_meta(child).fields for child in child_doctypes(fields)}
	schema = derive_schema(doctype, fields, children)
	stored.store(frappe.db, schema, frappe.utils.now_datetime(), frappe.session.user)
	return schema


def table_fields(doctype: str) -> list[tuple[str, str]]:
	import frappe

	return [(df.fieldname, df.options) for df in frappe.get_meta(doctype).get_table_fields()]


def get_codec() -> AvroCodec:
	"""The site's codec, made once per request or job (`frappe.local`)."""
	import frappe

	codec = getattr(frappe.local, _CODEC_ATTR, None)
	if codec is None:
		from zoneinfo import ZoneInfo

		from frappe.utils import get_system_timezone
		from frappe.utils.password import get_encryption_key

		codec = AvroCodec(
			site=frappe.local.site,
			time_zone=ZoneInfo(get_system_timezone()),
			mask_key=mask_key_from(get_encryption_key()),
			derive=derive_from_meta,
			table_fields=table_fields,
		)
		setattr(frappe.local, _CODEC_ATTR, codec)
	return codec
