"""Envelope: deterministic event ids, event time per doctype, and the schema headers."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from io import BytesIO

import pytest
from fastavro import schemaless_writer
from fixtures.erpnext import COMPANY, FakeDoc, gl_entry, job_card, stock_ledger_entry, submitted_sales_invoice

from erpnext_streaming.emitters.envelope import (
	EVENT_ID_NAMESPACE,
	build_envelope,
	event_id,
	normalise_modified,
	uuid5,
)
from erpnext_streaming.schemas import BuildError, EncodeError, get_event_schema
from erpnext_streaming.schemas.registry import PACKAGE_DIR, EventSchema
from erpnext_streaming.schemas.serializer import AvroEventSerializer, headers

UTC = timezone.utc
NOW = datetime(2024, 3, 1, 10, 16)


def envelope(doc, event_type="posted"):
	return build_envelope(doc, doc.doctype, event_type, "erp.example.com", NOW, get_event_schema(doc.doctype))


def test_same_state_gives_the_same_event_id():
	a = event_id("Sales Invoice", "SINV-1", "submitted", "2024-03-01 10:15:42.123456")
	assert a == event_id("Sales Invoice", "SINV-1", "submitted", "2024-03-01 10:15:42.123456")
	assert envelope(submitted_sales_invoice())["event_id"] == envelope(submitted_sales_invoice())["event_id"]
	assert uuid.UUID(a).version == 5


def test_a_datetime_and_its_frappe_string_give_the_same_event_id():
	same = [
		datetime(2024, 3, 1, 10, 15, 42, 123456),
		"2024-03-01 10:15:42.123456",
		"2024-03-01T10:15:42.123456",
	]
	assert len({event_id("GL Entry", "g1", "posted", m) for m in same}) == 1
	whole = [datetime(2024, 3, 1, 10, 15, 42), "2024-03-01 10:15:42", "2024-03-01 10:15:42.000000"]
	assert len({event_id("GL Entry", "g1", "posted", m) for m in whole}) == 1
	assert normalise_modified(datetime(2024, 3, 1, 10, 15, 42)) == "2024-03-01 10:15:42.000000"


def test_anything_that_differs_gives_another_event_id():
	base = ("Work Order", "WO-1", "progressed", "2024-03-04 10:45:00.000000")
	ids = {
		event_id(*base),
		event_id("Work Order", "WO-1", "progressed", "2024-03-04 10:45:00.000001"),
		event_id("Work Order", "WO-1", "submitted", base[3]),
		event_id("Work Order", "WO-2", "progressed", base[3]),
		event_id("Job Card", "WO-1", "progressed", base[3]),
	}
	assert len(ids) == 5


def test_event_id_is_uuid5_of_the_documented_text():
	text = "Sales Invoice|SINV-1|submitted|2024-03-01 10:15:42.123456"
	assert uuid5(text) == str(uuid.uuid5(EVENT_ID_NAMESPACE, text))
	assert event_id("Sales Invoice", "SINV-1", "submitted", "2024-03-01 10:15:42.123456") == uuid5(text)
	assert uuid5("ü|ñ") == str(uuid.uuid5(EVENT_ID_NAMESPACE, "ü|ñ"))


def test_event_time_is_posting_date_and_time_where_the_doctype_has_them():
	assert envelope(submitted_sales_invoice())["event_time"] == datetime(
		2024, 3, 1, 10, 15, 3, 250, tzinfo=UTC
	)
	assert envelope(stock_ledger_entry(True))["event_time"] == datetime(
		2024, 3, 1, 10, 15, 3, 250, tzinfo=UTC
	)


def test_event_time_of_a_posting_date_without_time_is_its_midnight_not_the_insert_time():
	"""Issue 17, item 6: a back-dated GL Entry (or the reversal rows of a cancellation)
	belongs to its posting date's period, not to the day it was inserted."""
	gle = gl_entry("g1", "Debtors - WP", 1.0, 0.0, posting_date="2023-12-31")
	assert envelope(gle)["event_time"] == datetime(2023, 12, 31, tzinfo=UTC)
	assert envelope(gle)["modified"] == datetime(2024, 3, 1, 10, 15, 41, 654321, tzinfo=UTC)
	card = job_card()
	card.posting_date = date(2024, 3, 2)
	assert envelope(card)["event_time"] == datetime(2024, 3, 2, tzinfo=UTC)
	order = FakeDoc("Sales Order", name="SO-1", modified="2024-03-05 09:00:00", transaction_date="2024-03-01")
	assert build_envelope(order, "Sales Order", "submitted", "s", NOW, get_event_schema("GL Entry"))[
		"event_time"
	] == datetime(2024, 3, 1, tzinfo=UTC)
	card.posting_date = None  # no date at all: modified
	assert envelope(card)["event_time"] == datetime(2024, 3, 4, 8, tzinfo=UTC)


def test_envelope_carries_identity_voucher_and_schema():
	gle = gl_entry("8b1f2c3d4e", "Sales - WP", 0.0, 12.5, voucher_detail_no="a1b2c3d401")
	env = envelope(gle)
	assert env["doctype"] == "GL Entry" and env["name"] == "8b1f2c3d4e" and env["company"] == COMPANY
	assert (env["voucher_type"], env["voucher_no"], env["voucher_detail_no"]) == (
		"Sales Invoice",
		"ACC-SINV-2024-00017",
		"a1b2c3d401",
	)
	assert (env["schema_name"], env["schema_version"]) == ("io.erpnext.streaming.GLEntryEvent", 1)
	assert (env["site"], env["docstatus"], env["emitted_at"]) == (
		"erp.example.com",
		1,
		NOW.replace(tzinfo=UTC),
	)
	invoice = envelope(submitted_sales_invoice(), "submitted")
	assert (invoice["voucher_type"], invoice["voucher_no"], invoice["voucher_detail_no"]) == (
		None,
		None,
		None,
	)


def test_envelope_fields_are_the_envelope_schema_fields():
	spec = json.loads((PACKAGE_DIR / "envelope.v1.avsc").read_text())
	assert list(envelope(submitted_sales_invoice())) == [f["name"] for f in spec["fields"]]


def test_a_document_without_company_has_an_empty_key():
	doc = FakeDoc("Quality Inspection", name="QI-1", docstatus=1, modified="2024-03-01 10:00:00.000000")
	env = build_envelope(doc, doc.doctype, "submitted", "s", NOW, get_event_schema("GL Entry"))
	assert env["company"] == ""


def test_missing_or_malformed_modified_is_a_build_error():
	doc = gl_entry("g1", "Debtors - WP", 1.0, 0.0)
	doc.modified = None
	with pytest.raises(BuildError, match=r"^envelope\.modified: is required to identify the event"):
		envelope(doc)
	with pytest.raises(BuildError, match=r"^modified: 'yesterday' is not a date"):
		event_id("GL Entry", "g1", "posted", "yesterday")


def test_headers_name_the_schema_version_and_fingerprint():
	schema = get_event_schema("Stock Ledger Entry")
	assert headers(schema) == [
		("schema_name", b"io.erpnext.streaming.StockLedgerEntryEvent"),
		("schema_version", b"1"),
		("schema_fingerprint", schema.fingerprint.encode()),
	]
	assert AvroEventSerializer(schema).headers == headers(schema)


def test_serializer_refuses_an_invalid_record_with_encode_error():
	schema = get_event_schema("GL Entry")
	record = envelope(gl_entry("g1", "Debtors - WP", 1.0, 0.0))
	record["document"] = {"name": "g1", "docstatus": "one"}
	with pytest.raises(EncodeError, match=r"^GLEntryEvent v1 refuses the record: ") as refused:
		AvroEventSerializer(schema)(record, None)
	with pytest.raises(Exception) as fastavros:
		schemaless_writer(BytesIO(), schema.parsed, record)
	assert str(refused.value).endswith(str(fastavros.value))  # fastavro's reason, as it gives it
	assert refused.value.__cause__.__class__ is fastavros.value.__class__


def test_serializer_writes_the_avro_specification_binary_encoding():
	"""Avro 1.11 specification, "Binary Encoding": longs as zig-zag varints; a decimal on bytes
	as the length, then the unscaled value in two's complement, big-endian."""
	schema = EventSchema.build(
		{
			"type": "record",
			"name": "N",
			"fields": [
				{"name": "n", "type": "long"},
				{
					"name": "d",
					"type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2},
				},
			],
		},
		"N",
		1,
		"test",
	)
	encode = AvroEventSerializer(schema)
	longs = {0: b"\x00", -1: b"\x01", 1: b"\x02", -2: b"\x03", 2: b"\x04", -64: b"\x7f", 64: b"\x80\x01"}
	longs[2**63 - 1] = b"\xfe" + b"\xff" * 8 + b"\x01"
	for n, expected in longs.items():
		assert encode({"n": n, "d": Decimal("1.00")}) == expected + b"\x02\x64"
	assert encode({"n": 0, "d": Decimal("-1.28")}) == b"\x00\x04\xff\x80"
	with pytest.raises(EncodeError):
		encode({"n": 2**63, "d": Decimal("1.00")})
