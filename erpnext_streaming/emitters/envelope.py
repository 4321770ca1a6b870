"""The envelope: event id and the fields that open every event record (docs/architecture.md).

`event_id(doctype, name, event_type, modified, state)` is a UUIDv5 under
`EVENT_ID_NAMESPACE` of `doctype|name|event_type|modified`, then `|value` per value of the
doctype's state fields (`constants.DoctypeSpec.state_fields`; none for ledger rows). The
flush builds each document's last event from its committed row (`capture.complete`), so a
backfill or replay of that state gives the same id. `modified` is normalised to Frappe's
text with six fractional digits and numbers to floats (`70.0` = `Decimal("70.000000000")`).
`modified` keeps a return to an earlier state a new event; the state keeps a change written
without `modified` (a bulk UPDATE of status) a new event.

`build_envelope(...)` returns the envelope fields as a dict; the caller adds `document`.
Frappe datetimes are naive wall-clock times of the site's time zone: pass that zone as
`time_zone` (`ZoneInfo(frappe.utils.get_system_timezone())`) so the envelope's instants
(`event_time`, `emitted_at`, `modified`, Avro `timestamp-micros`) are right; without it
they are read as UTC.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, time, timezone, tzinfo
from decimal import Decimal
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


def _state_text(value: Any) -> str:
	if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
		return repr(round(float(value), 9))
	return "" if value is None else str(value)


def event_id(doctype: str, name: str, event_type: str, modified: Any, state: Sequence[Any] = ()) -> str:
	"""Deterministic event id: UUIDv5 of `doctype|name|event_type|modified[|state...]` (module doc)."""
	text = f"{doctype}|{name}|{event_type}|{normalise_modified(modified)}"
	return uuid5(text + "".join(f"|{_state_text(v)}" for v in state))


def _instant(wall: datetime, time_zone: tzinfo) -> datetime:
	"""An aware datetime: naive Frappe wall-clock times are read in the site's time zone."""
	return wall.replace(tzinfo=time_zone) if wall.tzinfo is None else wall


def _event_wall_time(get: Callable[[str], Any], modified: datetime) -> datetime:
	"""When the event happened in the ledger: SLE's posting_datetime; posting_date plus
	posting_time where the doctype has one (Sales Invoice, Payment Entry), else midnight of
	posting_date (GL Entry, Job Card) or of transaction_date (orders); else `modified`."""
	posting_datetime = get("posting_datetime")
	if posting_datetime:
		return to_datetime(posting_datetime)
	day, clock = get("posting_date"), get("posting_time")
	if not day:
		day, clock = get("transaction_date"), None
	if not day:
		return modified
	return datetime.combine(to_date(day), time() if clock is None or clock == "" else to_time(clock))


def build_envelope(
	doc: Any,
	doctype: str,
	event_type: str,
	site: str,
	emitted_at: datetime,
	schema: EventSchema,
	*,
	time_zone: tzinfo | None = None,
	state_fields: Sequence[str] = (),
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
		"event_id": event_id(doctype, name, event_type, modified, [get(f) for f in state_fields]),
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
