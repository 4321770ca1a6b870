"""Masking: keyed hash or drop of optional text fields, keeping every record schema-valid."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

import pytest
from fixtures.erpnext import job_card_transitions, submitted_sales_invoice

from erpnext_streaming import validation
from erpnext_streaming.emitters.builders import BuildError, get_builder, mask, maskable_fields
from erpnext_streaming.emitters.builders.masking import DROP, KEYED_HASH, MASK_MODES
from erpnext_streaming.emitters.envelope import build_envelope
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.schemas.serializer import AvroEventSerializer
from erpnext_streaming.tests.utils import decode

KEY = b"site-masking-key"
FIELDS = frozenset({"customer_name", "tax_id", "items.item_name", "contact_person"})


def encode_decode(doc, body: dict) -> dict:
	schema = get_event_schema(doc.doctype)
	record = build_envelope(doc, doc.doctype, "submitted", "s", datetime(2024, 3, 1), schema)
	record["document"] = body
	return decode(AvroEventSerializer(schema)(record), schema)["document"]


def test_maskable_fields_are_the_optional_text_fields_children_included():
	fields = maskable_fields("Sales Invoice")
	assert {"customer_name", "tax_id", "remarks", "items.item_name", "items.warehouse"} <= fields
	assert (
		not {"name", "grand_total", "posting_date", "is_return", "items", "items.qty", "items.name"} & fields
	)
	assert "time_logs.employee" in maskable_fields("Job Card")
	assert MASK_MODES == validation.MASK_MODES == (KEYED_HASH, DROP)


def test_keyed_hash_is_hmac_sha256_hex_and_the_record_stays_valid():
	doc = submitted_sales_invoice(items=3)
	body = get_builder("Sales Invoice")(doc)
	masked = mask(body, FIELDS, KEYED_HASH, KEY)
	expected = hmac.new(KEY, b"Northwind Traders", hashlib.sha256).hexdigest()
	assert masked["customer_name"] == expected and len(expected) == 64
	assert [r["item_name"] for r in masked["items"]] == [
		hmac.new(KEY, r["item_name"].encode(), hashlib.sha256).hexdigest() for r in body["items"]
	]
	assert masked["grand_total"] == body["grand_total"] and masked["customer"] == "CUST-0042"
	assert body["customer_name"] == "Northwind Traders"  # the input is not changed
	assert encode_decode(doc, masked) == masked


def test_keyed_hash_is_deterministic_per_key_and_differs_across_keys():
	body = get_builder("Sales Invoice")(submitted_sales_invoice(items=1))
	one = mask(body, FIELDS, KEYED_HASH, KEY)
	assert one == mask(body, FIELDS, KEYED_HASH, KEY)
	other = mask(body, FIELDS, KEYED_HASH, b"another-key")
	assert other["tax_id"] != one["tax_id"] and other["items"][0]["item_name"] != one["items"][0]["item_name"]
	assert mask(body, FIELDS, KEYED_HASH, "site-masking-key") == one  # a str key is its UTF-8 bytes


def test_drop_nulls_the_fields_and_the_record_stays_valid():
	doc = job_card_transitions()[3]
	body = get_builder("Job Card")(doc)
	masked = mask(body, frozenset({"time_logs.employee", "remarks", "item_name"}), DROP, b"")
	assert [log["employee"] for log in masked["time_logs"]] == [None, None]
	assert masked["item_name"] is None
	assert encode_decode(doc, masked) == masked


def test_null_stays_null_and_no_fields_means_no_copy():
	body = get_builder("Sales Invoice")(submitted_sales_invoice(items=1))
	assert body["project"] is None
	assert mask(body, frozenset({"project"}), KEYED_HASH, KEY)["project"] is None
	assert mask(body, frozenset(), KEYED_HASH, KEY) is body


def test_masking_a_field_that_is_not_optional_text_is_refused():
	body = get_builder("Sales Invoice")(submitted_sales_invoice(items=2))
	with pytest.raises(BuildError, match=r"^grand_total: cannot be masked: only optional text fields can"):
		mask(body, frozenset({"grand_total"}), KEYED_HASH, KEY)
	with pytest.raises(BuildError, match=r"^items\[0\]\.qty: cannot be masked"):
		mask(body, frozenset({"items.qty"}), DROP, KEY)
	with pytest.raises(BuildError, match=r"^name: cannot be masked"):
		mask(body, frozenset({"name"}), KEYED_HASH, KEY)


def test_bad_mode_or_missing_key_is_refused():
	body = {"customer_name": "x"}
	with pytest.raises(BuildError, match="mask mode must be one of Keyed hash, Drop, not 'Blur'"):
		mask(body, frozenset({"customer_name"}), "Blur", KEY)
	with pytest.raises(BuildError, match="needs a non-empty key"):
		mask(body, frozenset({"customer_name"}), KEYED_HASH, b"")
