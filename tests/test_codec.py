"""AvroCodec: what the capture core asks (build, envelope, encode, dead letter), end to end in Avro."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from fixtures.erpnext import COMPANY, FakeDoc, stock_ledger_entry, submitted_sales_invoice

from erpnext_streaming.catalog import Route
from erpnext_streaming.constants import Status
from erpnext_streaming.emitters.codec import AvroCodec, mask_key_from
from erpnext_streaming.schemas import EncodeError, SchemaError, get_event_schema
from erpnext_streaming.schemas.derive import derive_schema
from erpnext_streaming.tests.utils import decode

KOLKATA = ZoneInfo("Asia/Kolkata")
NOW = datetime(2024, 3, 1, 10, 16)


def route(doctype, event_type="submitted", masked=frozenset(), mode="Keyed hash", version=0) -> Route:
	return Route(doctype, "on_submit", "submit", event_type, f"erpnext.{doctype}", version, masked, mode)


def Event(route: Route, doctype: str, name: str, company: str, modified, envelope=None, document=None):
	"""The fields of `capture.Captured` the codec reads."""
	return SimpleNamespace(**locals())


def captured(codec: AvroCodec, doc, r: Route) -> Event:
	return Event(r, r.doctype, doc.name, COMPANY, None, codec.envelope(doc, r, NOW), codec.build(doc, r))


def test_encode_gives_an_outbox_record_with_the_avro_payload():
	codec = AvroCodec("erp.example.com", KOLKATA, b"k")
	doc = submitted_sales_invoice(items=3)
	event = captured(codec, doc, route("Sales Invoice"))
	record = codec.encode(event)
	schema = get_event_schema("Sales Invoice")
	decoded = decode(record.payload, schema)
	assert decoded == {**event.envelope, "document": event.document}
	assert (record.status, record.last_error, record.event_id) == (
		Status.QUEUED,
		"",
		event.envelope["event_id"],
	)
	assert (record.schema_name, record.schema_version, record.schema_fingerprint) == (
		schema.name,
		1,
		schema.fingerprint,
	)
	assert (record.topic, record.message_key, record.company) == ("erpnext.Sales Invoice", COMPANY, COMPANY)
	assert record.event_time == datetime(2024, 3, 1, 10, 15, 3, 250)  # naive, the site's wall clock
	assert decoded["site"] == "erp.example.com"


def test_masked_fields_of_the_route_are_hashed_with_the_site_key():
	key = mask_key_from("site-encryption-key")
	assert key == hmac.new(b"site-encryption-key", b"erpnext_streaming:mask", hashlib.sha256).digest()
	codec = AvroCodec("s", mask_key=key)
	r = route("Sales Invoice", masked=frozenset({"customer_name", "items.item_name"}))
	event = captured(codec, submitted_sales_invoice(items=2), r)
	assert event.document["customer_name"] == hmac.new(key, b"Northwind Traders", hashlib.sha256).hexdigest()
	assert (
		decode(codec.encode(event).payload, get_event_schema("Sales Invoice"))["document"] == event.document
	)


def test_a_pinned_schema_version_is_used():
	codec = AvroCodec("s")
	assert codec.schema(route("GL Entry", version=1)) is get_event_schema("GL Entry", 1)


def test_stock_ledger_snapshot_completed_at_flush_builds_like_a_document():
	codec = AvroCodec("s")
	snapshot = dict(vars(stock_ledger_entry(valued=True)))  # what capture completes from the database
	r = route("Stock Ledger Entry", "posted")
	assert codec.build(snapshot, r) == codec.build(stock_ledger_entry(valued=True), r)


def test_admin_added_doctypes_use_a_derived_schema():
	derived = derive_schema(
		"Vehicle Log", [("odometer", "Int"), ("fuel_qty", "Float"), ("price", "Currency")]
	)
	codec = AvroCodec("s", derive=lambda doctype: derived)
	doc = FakeDoc(
		"Vehicle Log",
		name="VL-1",
		docstatus=1,
		modified="2024-03-01 10:00:00.000000",
		odometer=1200,
		price=99.5,
	)
	event = captured(codec, doc, route("Vehicle Log"))
	record = codec.encode(event)
	assert (
		record.schema_version == derived.version
		and record.schema_name == "io.erpnext.streaming.VehicleLogEvent"
	)
	assert decode(record.payload, derived)["document"]["odometer"] == 1200
	with pytest.raises(SchemaError, match="no schema for Vehicle Log"):
		AvroCodec("s").schema(route("Vehicle Log"))


def test_dead_letters_never_raise_and_carry_the_reason():
	codec = AvroCodec("s")
	unknown = Event(route("Nope"), "Nope", "N-1", "", None)
	record = codec.dead_letter(unknown, "BuildError: qty: 'x' is not a number")
	assert (record.status, record.payload, record.schema_name) == (Status.DEAD, b"", "")
	assert record.last_error == "BuildError: qty: 'x' is not a number"
	assert record.event_id == codec.dead_letter(unknown, "again").event_id  # deterministic
	known = captured(codec, submitted_sales_invoice(items=1), route("Sales Invoice"))
	letter = codec.dead_letter(known, "why")
	assert (letter.event_id, letter.schema_version) == (known.envelope["event_id"], 1)


def test_a_record_the_schema_refuses_is_an_encode_error():
	codec = AvroCodec("s")
	event = captured(codec, submitted_sales_invoice(items=1), route("Sales Invoice"))
	event.document["grand_total"] = "a lot"
	with pytest.raises(EncodeError):
		codec.encode(event)
