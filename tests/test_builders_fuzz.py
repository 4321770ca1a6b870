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
from fixtures.erpnext import (
	FakeDoc,
	job_card_transitions,
	stock_ledger_entry,
	submitted_sales_invoice,
	work_order,
)
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from erpnext_streaming.emitters.builders import BuildError, get_builder
from erpnext_streaming.emitters.envelope import build_envelope
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.schemas.serializer import AvroEventSerializer, decode

TEMPLATES = {
	"Sales Invoice": lambda: submitted_sales_invoice(items=2),
	"GL Entry": lambda: FakeDoc("GL Entry", name="g", docstatus=1, modified="2024-03-01 10:00:00.000000"),
	"Stock Ledger Entry": lambda: stock_ledger_entry(valued=True),
	"Work Order": work_order,
	"Job Card": lambda: job_card_transitions()[3],
}
TABLES = {
	"Sales Invoice": ["items"],
	"Work Order": ["operations", "required_items"],
	"Job Card": ["time_logs"],
}

odd_values = st.one_of(
	st.none(),
	st.just(""),
	st.text(max_size=12),
	st.from_regex(r"\s?-?\d{1,14}(\.\d{1,12})?\s?", fullmatch=True),  # numeric text
	st.from_regex(r"\d{4}-\d{2}-\d{2}( \d{1,2}:\d{2}(:\d{2}(\.\d{1,7})?)?)?", fullmatch=True),
	st.integers(),
	st.floats(),
	st.decimals(),
	st.booleans(),
	st.dates(),
	st.datetimes(),
	st.times(),
	st.timedeltas(),
	st.lists(st.integers(), max_size=2),
	st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
	st.binary(max_size=4),
	st.builds(object),
)


def as_plain(doc, plain: bool):
	if not plain or not isinstance(doc, FakeDoc):
		return doc
	return {k: [as_plain(r, plain) for r in v] if isinstance(v, list) else v for k, v in vars(doc).items()}


@st.composite
def documents(draw, doctype: str):
	doc = TEMPLATES[doctype]()
	fields = [f["name"] for f in get_event_schema(doctype).document_schema["fields"]]
	for field in draw(st.lists(st.sampled_from(fields), max_size=6)):
		setattr(doc, field, draw(odd_values))
	for table in TABLES.get(doctype, ()):
		rows = getattr(doc, table)
		if not isinstance(rows, list):  # replaced by the field mutations above
			continue
		shape = draw(st.sampled_from(["keep", "missing", "none", "odd", "mutate", "huge"]))
		if shape == "missing":
			delattr(doc, table)
		elif shape == "none":
			setattr(doc, table, None)
		elif shape == "odd":
			setattr(doc, table, draw(odd_values))
		elif shape == "huge":
			setattr(doc, table, (rows * 2000)[:2000])
		elif shape == "mutate" and any(isinstance(r, FakeDoc) for r in rows):
			row = draw(st.sampled_from([r for r in rows if isinstance(r, FakeDoc)]))
			row_fields = list(vars(row))
			for field in draw(st.lists(st.sampled_from(row_fields), max_size=4)):
				setattr(row, field, draw(odd_values))
			if draw(st.booleans()):
				rows.append(draw(st.sampled_from([None, "row", 3, {}])))
	return as_plain(doc, draw(st.booleans()))


def same(a, b) -> bool:
	if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
		return math.isnan(b)
	if isinstance(a, dict):
		return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
	if isinstance(a, list):
		return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
	return (a == b and type(a) is type(b)) or (isinstance(a, Decimal) and a == b)


@pytest.mark.parametrize("doctype", sorted(TEMPLATES))
@settings(
	max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(data=st.data())
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
