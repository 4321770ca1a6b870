"""The bundle format (delivery/messages.py, "bundles"): what a user's transaction stores and
the drainer reads back as messages, framed and with their headers in order."""

from __future__ import annotations

import base64
import dataclasses
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from erpnext_streaming.constants import Encoding
from erpnext_streaming.delivery import messages
from erpnext_streaming.delivery.framing import FramingError
from erpnext_streaming.delivery.state import Outcome

SITE, TZ = "site.test", ZoneInfo("Asia/Kolkata")


def row(name: int, reference: str, doctype: str = "GL Entry", **extra) -> dict:
	return {
		"name": name, "creation": datetime(2026, 11, 23, 9, 30), "event_id": f"id-{name}",
		"event_type": "posted", "reference_doctype": doctype, "reference_name": reference,
		"company": "Acme", "message_key": "Acme", "event_time": datetime(2026, 11, 23, 9, 30, name),
		"topic": f"erpnext.{doctype.lower().replace(' ', '-')}", "schema_name": f"io.erpnext.streaming.{doctype}",
		"schema_version": 1, "schema_fingerprint": "ab12", "company_sequence": name,
		"payload": base64.b64encode(bytes([name, 1, 2, 255])).decode("ascii"),
		"encoding": Encoding.SCHEMALESS, **extra,
	}  # fmt: skip


def message_of(row, site: str, time_zone, framer=None):
	"""The message the drainer sends for one Event Log row (its bundle, read back), key and
	header values as bytes, as a consumer gets them."""
	ready: list = []
	failed: dict = {}
	messages.read(messages.bundle([row], site, time_zone), framer, ready, failed)
	assert not failed, failed
	(message,) = ready
	headers = [(k, v.encode()) for k, v in message.headers.items()]
	return dataclasses.replace(message, key=message.key.encode(), headers=headers)


def read(text: str, framer=None) -> tuple[list, list, dict]:
	ready: list = []
	failed: dict = {}
	return messages.read(text, framer, ready, failed), ready, failed


def test_a_bundle_reads_back_each_rows_message_with_its_headers_in_order():
	rows = [row(1, "gle-1"), row(2, "sle-1", "Stock Ledger Entry"), row(3, "gle-2")]
	refs, ready, failed = read(messages.bundle(rows, SITE, TZ))
	assert refs == [1, 2, 3] and failed == {}
	for message, source in zip(ready, rows, strict=True):
		assert (message.ref, message.topic, message.key, message.value) == (
			source["name"], source["topic"], "Acme", base64.b64decode(source["payload"]))  # fmt: skip
		assert [(k, v.encode()) for k, v in message.headers.items()] == messages.headers(source, SITE, TZ)


def test_the_headers_a_routes_events_share_are_stored_once_per_bundle():
	rows = [row(n, f"gle-{n}") for n in range(1, 21)]
	text = messages.bundle(rows, SITE, TZ)
	head, routes, events, values = text.split("\n", 3)
	assert head == str(messages.BUNDLE_FORMAT) and len(json.loads(routes)) == 1
	assert text.count("io.erpnext.streaming.gl-entry.posted") == 1
	assert text.count("io.erpnext.streaming.GL Entry") == 1
	assert [e[2] for e in json.loads(events)] == [4] * 20 and len(values) == 80
	assert messages.refs(text) == list(range(1, 21))


def test_values_are_stored_byte_for_character_and_read_back_exactly_whatever_their_bytes():
	"""Every byte value, newlines and NULs included, in the values line (one character per
	byte): the lines before it still split at their newlines, each value comes back whole."""
	every = bytes(range(256))
	rows = [row(1, "gle-1", payload=every), row(2, "gle-2", payload=b"\n\n3\n[]"), row(3, "gle-3")]
	text = messages.bundle(rows, SITE, TZ)
	assert text.endswith(every.decode("latin-1") + "\n\n3\n[]" + "\x03\x01\x02\xff")
	refs, ready, failed = read(text)
	assert refs == [1, 2, 3] and failed == {}
	assert [m.value for m in ready] == [every, b"\n\n3\n[]", bytes([3, 1, 2, 255])]


def test_a_bundle_whose_values_do_not_match_their_lengths_is_refused_whole():
	text = messages.bundle([row(1, "gle-1"), row(2, "gle-2")], SITE, TZ)
	for damaged in (text[:-1], text + "x"):
		ready: list = []
		with pytest.raises(ValueError, match="values hold"):
			messages.read(damaged, None, ready, {})


def test_a_row_that_cannot_be_a_message_is_kept_with_its_reason_and_read_as_unsendable():
	rows = [row(1, "gle-1"), row(2, "gle-2", topic=""), row(3, "gle-3", encoding="zip")]
	refs, ready, failed = read(messages.bundle(rows, SITE, TZ))
	assert refs == [1, 2, 3] and [m.ref for m in ready] == [1]
	assert failed[2].outcome is Outcome.PERMANENT and "no topic" in failed[2].reason
	assert failed[3].outcome is Outcome.PERMANENT and "unknown encoding 'zip'" in failed[3].reason


class Framer:
	"""Frames as the Confluent wire format would, with a schema id per (topic, fingerprint)."""

	def __init__(self, fail: bool = False):
		self.fail, self.rows = fail, []

	def confluent(self, row, body: bytes) -> bytes:
		if self.fail:
			raise FramingError("the Schema Registry cannot be reached", retriable=True)
		self.rows.append(dict(row))
		return b"\x00\x00\x00\x00\x07" + body


def test_a_confluent_route_is_framed_by_the_drainer_with_the_rows_schema_identity():
	rows = [row(1, "gle-1", encoding=Encoding.CONFLUENT), row(2, "gle-2", encoding=Encoding.CONFLUENT)]
	text = messages.bundle(rows, SITE, TZ)
	framer = Framer()
	_, ready, failed = read(text, framer)
	assert failed == {} and [m.value for m in ready] == [
		b"\x00\x00\x00\x00\x07" + bytes([n, 1, 2, 255]) for n in (1, 2)
	]
	assert framer.rows[0] == {
		"reference_doctype": "GL Entry", "schema_version": 1, "schema_fingerprint": "ab12", "topic": "erpnext.gl-entry"}  # fmt: skip
	assert dict(ready[0].headers)["content-type"] == Encoding.CONTENT_TYPE[Encoding.CONFLUENT]
	_, ready, failed = read(text, Framer(fail=True))
	assert ready == [] and failed[1].outcome is Outcome.RETRIABLE


def test_text_that_is_not_a_format_3_bundle_is_refused():
	for other in ("[]", '{"v": 2, "routes": [], "events": []}', "2\n[]\n[]\n"):
		with pytest.raises(ValueError, match="not a bundle of format 3"):
			messages.read(other, None, [], {})
		with pytest.raises(ValueError, match="not a bundle of format 3"):
			messages.refs(other)
