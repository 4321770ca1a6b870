"""The envelope: event id and the fields that open every event record (docs/architecture.md).

`event_id(doctype, name, event_type, modified)` is a UUIDv5 under `EVENT_ID_NAMESPACE` of
`doctype|name|event_type|modified`, with `modified` normalised to Frappe's wall-clock text
with six fractional digits (`2024-03-01 10:15:00.000000`), so a `datetime` and its Frappe
string give the same id, and the same state captured twice (a retried job, a replayed
hook) gives the same id for consumers to deduplicate on.

`build_envelope(...)` returns the envelope fields as a dict; the caller adds `document`.
Frappe datetimes are naive wall-clock times of the site's time zone: pass that zone as
`time_zone` (`ZoneInfo(frappe.utils.get_system_timezone())`) so the envelope's instants
(`event_time`, `emitted_at`, `modified`, Avro `timestamp-micros`) are right; without it
they are read as UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timezone, tzinfo
from typing import Any

from erpnext_streaming.emitters.builders.compiler import (
	Invalid,
	to_date,
	to_datetime,
	to_int32,
	to_str,
	to_time,
)
from erpnext_streaming.schemas.errors import BuildError
from erpnext_streaming.schemas.registry import EventSchema

# Fixed forever: uuid5(NAMESPACE_URL, "https://github.com/erpnext-streaming/erpnext_streaming/event-id")
EVENT_ID_NAMESPACE = uuid.UUID("1267ae89-6de4-5619-9e24-c73dcfce39c0")
LEDGER_FIELDS = ("voucher_type", "voucher_no", "voucher_detail_no")
UTC = timezone.utc


def _modified(value: Any) -> datetime:
	if value is None or value == "":
		raise Invalid("is required to identify the event but is empty")
	return to_datetime(value)


def normalise_modified(modified: Any) -> str:
	"""`modified` as Frappe's wall-clock text with microseconds: `YYYY-MM-DD HH:MM:SS.ffffff`."""
	try:
		return _modified(modified).isoformat(" ", "microseconds")
	except Invalid as e:
		raise BuildError(str(e), "modified")


def uuid5(text: str) -> str:
	"""The event id of `text`: the UUIDv5 (RFC 4122, SHA-1 name-based) under `EVENT_ID_NAMESPACE`."""
	return str(uuid.uuid5(EVENT_ID_NAMESPACE, text))


def event_id(doctype: str, name: str, event_type: str, modified: Any) -> str:
	"""Deterministic event id: UUIDv5 of `doctype|name|event_type|modified` (see module doc)."""
	return uuid5(f"{doctype}|{name}|{event_type}|{normalise_modified(modified)}")


def _instant(wall: datetime, time_zone: tzinfo) -> datetime:
	"""An aware datetime: naive Frappe wall-clock times are read in the site's time zone."""
	return wall.replace(tzinfo=time_zone) if wall.tzinfo is None else wall


def _event_wall_time(get: Callable[[str], Any], modified: datetime) -> datetime:
	"""Posting date + time where the doctype has them (SLE: posting_datetime), else modified."""
	posting_datetime = get("posting_datetime")
	if posting_datetime:
		return to_datetime(posting_datetime)
	posting_date = get("posting_date")
	if posting_date:
		posting_time = get("posting_time")
		if posting_time is not None and posting_time != "":
			return datetime.combine(to_date(posting_date), to_time(posting_time))
	return modified


def build_envelope(
	doc: Any,
	doctype: str,
	event_type: str,
	site: str,
	emitted_at: datetime,
	schema: EventSchema,
	*,
	time_zone: tzinfo | None = None,
) -> dict:
	"""The envelope fields of an event record (everything but `document`).

	Raises `BuildError` (field `envelope.<name>`) when the document's identity, modified or
	posting fields cannot be read.
	"""
	time_zone = time_zone or UTC
	get = doc.get if isinstance(doc, dict) else lambda fieldname: getattr(doc, fieldname, None)
	field = "name"
	try:
		name = to_str(get("name"))
		field = "modified"
		modified = _modified(get("modified"))
		field = "event_time"
		event_time = _instant(_event_wall_time(get, modified), time_zone)
		field = "docstatus"
		docstatus = to_int32(get("docstatus") or 0)
		field = "company"
		company = to_str(get("company") or "")
		ledger = []
		for field in LEDGER_FIELDS:
			value = get(field)
			ledger.append(None if value is None or value == "" else to_str(value))
	except Invalid as e:
		raise BuildError(str(e), f"envelope.{field}")
	return {
		"event_id": event_id(doctype, name, event_type, modified),
		"event_type": event_type,
		"doctype": doctype,
		"name": name,
		"company": company,
		"site": site,
		"docstatus": docstatus,
		"event_time": event_time,
		"emitted_at": _instant(emitted_at, time_zone),
		"modified": _instant(modified, time_zone),
		"schema_name": schema.name,
		"schema_version": schema.version,
		"voucher_type": ledger[0],
		"voucher_no": ledger[1],
		"voucher_detail_no": ledger[2],
	}
