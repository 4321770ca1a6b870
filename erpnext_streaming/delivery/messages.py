"""An Event Log row as a Kafka message: key (the company, UTF-8), value (the stored Avro bytes,
framed per the row's encoding: `framing.py`) and CloudEvents binary-mode headers.

The headers, dead-letter headers and the bundle format are specified once, in
docs/architecture.md ("Event record", "Bundle format", "Large events in parts" for the
dead-letter copy).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from erpnext_streaming.constants import Encoding, topic_slug
from erpnext_streaming.delivery.framing import DEFAULT_FRAMER, Framer, FramingError, single_object
from erpnext_streaming.delivery.policy import Classified, unencodable
from erpnext_streaming.delivery.producer import OutgoingMessage
from erpnext_streaming.delivery.state import Outcome
from erpnext_streaming.outbox.records import decode_payload

CE_SPECVERSION = "1.0"
CE_TYPE_PREFIX = "io.erpnext.streaming"
CONTENT_TYPE = "application/avro"
# a dead-letter copy never carries a value this large (it would be refused like the original)
DEAD_LETTER_VALUE_LIMIT = 512 * 1024


def ce_type(doctype: str, event_type: str) -> str:
	"""`io.erpnext.streaming.sales-invoice.submitted`"""
	return f"{CE_TYPE_PREFIX}.{topic_slug(doctype)}.{event_type}"


def ce_time(moment: datetime | None, time_zone: ZoneInfo) -> str:
	"""RFC 3339 with the offset of the site's time zone (Frappe stores naive local times)."""
	if moment is None:
		return ""
	if moment.tzinfo is None:
		moment = moment.replace(tzinfo=time_zone)
	return moment.isoformat()


def message_key(row: Any) -> bytes:
	return (row["message_key"] or row["company"] or "").encode("utf-8")


def headers(
	row: Any, site: str, time_zone: ZoneInfo, content_type: str = CONTENT_TYPE
) -> list[tuple[str, bytes]]:
	"""The CloudEvents, schema and sequence headers of a row, in the order below."""
	doctype = row["reference_doctype"]
	named = [
		("ce_id", row["event_id"] or ""),
		("ce_type", ce_type(doctype or "", row["event_type"] or "")),
		("ce_source", site),
		("ce_subject", f"{doctype}/{row['reference_name']}"),
		("ce_time", ce_time(row["event_time"] or row["creation"], time_zone)),
		("ce_specversion", CE_SPECVERSION),
		("content-type", content_type),
		("schema_name", row["schema_name"] or ""),
		("schema_version", row["schema_version"] or 0),
		("schema_fingerprint", row["schema_fingerprint"] or ""),
		("es_company_sequence", row["company_sequence"] or 0),
	]
	return [(name, str(value).encode("utf-8")) for name, value in named]


# -- bundles: messages built in the user's transaction ---------------------------------
#
# `bundle` writes, `read` and `refs` read the bundle format (format 3), specified once in
# docs/architecture.md, "Bundle format".

BUNDLE_FORMAT = 3
_HEAD = f"{BUNDLE_FORMAT}\n"
OWN_HEADERS = ("ce_id", "ce_subject", "ce_time", "es_company_sequence")


def bundle(rows: Iterable[Any], site: str, time_zone: tzinfo) -> str:
	"""The text of a bundle of Event Log rows (`outbox.records.DELIVERY_COLUMNS`; a row's `payload` is
	the stored base64 text, or the bytes themselves, as `outbox.write` has them): never raises."""
	routes: dict[str, int] = {}
	events: list[list] = []
	values: list[str] = []
	for row in rows:
		try:
			if not row["topic"]:
				raise ValueError("the row has no topic")
			if not row["event_id"]:
				raise ValueError("the row has no event id")
			encoding = row.get("encoding") or Encoding.DEFAULT
			value, registry = row["payload"] or b"", None
			if not isinstance(value, bytes):
				value = decode_payload(value)
			if encoding == Encoding.SINGLE_OBJECT:
				value = single_object(row["schema_fingerprint"], value)
			elif encoding == Encoding.CONFLUENT:
				registry = [
					row["reference_doctype"],
					int(row["schema_version"] or 0),
					row["schema_fingerprint"],
				]
			elif encoding != Encoding.SCHEMALESS:
				raise FramingError(f"unknown encoding {encoding!r}")
			named = {
				k: v.decode("utf-8")
				for k, v in headers(row, site, time_zone, Encoding.CONTENT_TYPE[encoding])
			}
			own = [named[k] for k in OWN_HEADERS]
			named.update(dict.fromkeys(OWN_HEADERS, ""))
			route = json.dumps(
				[row["topic"], message_key(row).decode("utf-8"), named, registry], separators=(",", ":")
			)
			events.append([row["name"], routes.setdefault(route, len(routes)), len(value), *own])
			values.append(value.decode("latin-1"))
		except FramingError as e:
			events.append([row["name"], None, e.message])
		except Exception as e:
			events.append([row["name"], None, f"unencodable: {type(e).__name__}: {e}"])
	return "".join(
		[_HEAD, "[", ",".join(routes), "]\n", json.dumps(events, separators=(",", ":")), "\n", *values]
	)


def refs(text: str) -> list[Any]:
	"""The Event Log names of a bundle's events, in order."""
	return [event[0] for event in json.loads(_lines(text)[2])]


def read(
	text: str, framer: Framer | None, outgoing: list[OutgoingMessage], failed: dict[Any, Any]
) -> list[Any]:
	"""The messages of a bundle appended to `outgoing` in order, and the events that cannot
	be sent put in `failed` ({event log: Classified}); returns the bundle's Event Log names,
	in order. A message's value is a slice of the bundle's values, its headers a copy of its
	route's with four values set."""
	_, routes, events, values = _lines(text)
	return _read(json.loads(routes), json.loads(events), values.encode("latin-1"), framer, outgoing, failed)


def _lines(text: str) -> list[str]:
	"""The four lines of a bundle: format, routes, events, values. Raises on any other text."""
	if not text.startswith(_HEAD):
		raise ValueError(f"not a bundle of format {BUNDLE_FORMAT}")
	return text.split("\n", 3)


def _read(
	routes: list,
	events: list,
	values: bytes,
	framer: Framer | None,
	outgoing: list[OutgoingMessage],
	failed: dict[Any, Any],
) -> list[Any]:
	"""`read` of parsed routes and events (value lengths) and the values they share. Raises
	when the lengths do not add up to the values (a damaged bundle is not sent in part)."""
	names, start = [], 0
	for event in events:
		ref, index = event[0], event[1]
		names.append(ref)
		if index is None:
			failed[ref] = Classified(Outcome.PERMANENT, False, str(event[2]))
			continue
		end = start + event[2]
		body, start = values[start:end], end
		topic, key, shared, registry = routes[index]
		if registry is not None:
			try:
				body = _confluent(framer, topic, registry, body)
			except FramingError as e:
				failed[ref] = e.classified()
				continue
			except Exception as e:
				failed[ref] = unencodable(e)
				continue
		headers = shared.copy()  # in order: the shared keys keep their places
		headers["ce_id"], headers["ce_subject"], headers["ce_time"] = event[3], event[4], event[5]
		headers["es_company_sequence"] = event[6]
		outgoing.append(OutgoingMessage(ref, topic, key, body, headers))
	if start != len(values):
		raise ValueError(f"the bundle's values hold {len(values)} bytes, its events {start}")
	return names


def _confluent(framer: Framer | None, topic: str, registry: list, body: bytes) -> bytes:
	"""The Confluent framing of `body` (registry: [doctype, schema version, fingerprint])."""
	doctype, version, fingerprint = registry
	row = {"reference_doctype": doctype, "schema_version": version, "schema_fingerprint": fingerprint}
	return (framer or DEFAULT_FRAMER).confluent({**row, "topic": topic}, body)


def dead_letter(
	row: Any,
	site: str,
	time_zone: ZoneInfo,
	topic: str,
	reason: str,
	attempts: int,
	omit_value: bool = False,
) -> OutgoingMessage:
	"""The copy of a Dead row for the dead-letter topic: original headers plus the error.

	Built even from rows that cannot be messages themselves (no topic, bad payload), so
	every Dead row reaches the dead-letter topic; the payload stays in the Event Log when
	it is too large or unreadable (`es_payload_omitted`)."""
	extra: list[tuple[str, str]] = []
	value: bytes | None
	try:
		value = decode_payload(row["payload"] or "")
	except Exception as e:
		value, omitted = None, f"unreadable payload: {type(e).__name__}"
	else:
		omitted = ""
		if omit_value or len(value) > DEAD_LETTER_VALUE_LIMIT:
			omitted = f"{len(value)} bytes, kept in the Event Log row"
			value = None
		elif not value:
			value = None
	if omitted:
		extra.append(("es_payload_omitted", omitted))
	encoding = row.get("encoding") or Encoding.DEFAULT
	if encoding != Encoding.SCHEMALESS:
		extra.append(("es_encoding", encoding))
	extra += [
		("es_error", reason),
		("es_original_topic", row["topic"] or ""),
		("es_attempts", str(attempts)),
		("es_event_log", str(row["name"])),
	]
	return OutgoingMessage(
		ref=row["name"],
		topic=topic,
		key=message_key(row),
		value=value,
		headers=[*headers(row, site, time_zone), *((k, v.encode("utf-8")) for k, v in extra)],
	)
