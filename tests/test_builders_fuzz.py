"""Builders never fail with anything but BuildError, whatever the document holds.

The capture hook turns a BuildError into a dead-letter row; any other exception would be
a bug. Documents start as the ERPNext fixtures and get None, empty strings, text in
numeric fields, numbers in text fields, foreign objects, missing, malformed or huge child
tables. Property: the builder raises BuildError, or its record encodes and decodes back.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import Decimal

import pytest
from fixtures.erpnext import FakeDoc, submitted_sales_invoice
from fixtures.fuzz import TEMPLATES, documents, for_each_fuzzed_doctype
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from erpnext_streaming.emitters.builders import BuildError, get_builder
from erpnext_streaming.emitters.envelope import build_envelope
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.schemas.serializer import AvroEventSerializer
from erpnext_streaming.tests.utils import decode


def same(a, b) -> bool:
	if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
		return math.isnan(b)
	if isinstance(a, dict):
		return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
	if isinstance(a, list):
		return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
	return (a == b and type(a) is type(b)) or (isinstance(a, Decimal) and a == b)


@for_each_fuzzed_doctype(100)
def test_builders_produce_a_valid_record_or_raise_build_error(doctype, data):
	doc = data.draw(documents(doctype))
	schema = get_event_schema(doctype)
	try:
		record = build_envelope(doc, doctype, "submitted", "site", datetime(2024, 3, 1), schema)
		record["document"] = get_builder(doctype)(doc)
	except BuildError as e:
		event(f"BuildError on {doctype}")
		assert e.reason and str(e).startswith(f"{e.field}: " if e.field else e.reason)
		return
	event(f"valid {doctype} record")
	decoded = decode(AvroEventSerializer(schema)(record), schema)  # an EncodeError here is a bug
	assert same(decoded, record)


def test_a_document_that_is_not_a_document_is_a_build_error():
	for value in (None, "SINV-1", 42, [], ()):
		try:
			get_builder("Sales Invoice")(value)
		except BuildError as e:
			assert "is not a document or row" in str(e)
		else:
			raise AssertionError(value)


def test_a_2000_row_invoice_builds_and_round_trips():
	doc = submitted_sales_invoice(items=2000)
	schema = get_event_schema("Sales Invoice")
	record = build_envelope(doc, doc.doctype, "submitted", "site", datetime(2024, 3, 1), schema)
	record["document"] = get_builder("Sales Invoice")(doc)
	decoded = decode(AvroEventSerializer(schema)(record), schema)
	assert len(decoded["document"]["items"]) == 2000 and decoded == record
