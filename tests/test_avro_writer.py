"""The generated Avro writer (schemas/writer.py) writes fastavro's bytes, exactly, and hands
everything else to fastavro.

Differential: every record is also encoded by `fastavro.schemaless_writer` with the same
parsed schema, and the two byte strings must be equal; a record the generated writer does
not take must give the serializer fastavro's result (bytes, or its refusal).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from fixtures.avro import fastavro_bytes
from fixtures.erpnext import (
	cancelled_sales_invoice,
	gl_entry,
	job_card_transitions,
	stock_ledger_entry,
	submitted_sales_invoice,
	work_order,
)
from fixtures.fuzz import TEMPLATES, documents, for_each_fuzzed_doctype
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erpnext_streaming.emitters.builders import BuildError, get_builder
from erpnext_streaming.emitters.envelope import build_envelope
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.schemas.errors import EncodeError
from erpnext_streaming.schemas.registry import EventSchema
from erpnext_streaming.schemas.serializer import AvroEventSerializer
from erpnext_streaming.schemas.writer import Fallback, compile_writer, decimal_bytes, long_bytes


def event_record(doc, doctype: str, event_type: str = "submitted") -> tuple[EventSchema, dict]:
	schema = get_event_schema(doctype)
	record = build_envelope(doc, doctype, event_type, "site.local", datetime(2024, 3, 1, 9, 30), schema)
	record["document"] = get_builder(doctype)(doc)
	return schema, record


ERPNEXT_DOCUMENTS = {
	"Sales Invoice, 1 item": lambda: ("Sales Invoice", submitted_sales_invoice(items=1)),
	"Sales Invoice, 20 items": lambda: ("Sales Invoice", submitted_sales_invoice(items=20)),
	"Sales Invoice, cancelled": lambda: ("Sales Invoice", cancelled_sales_invoice()),
	"GL Entry": lambda: ("GL Entry", gl_entry("GLE-1", "Debtors - TC", 118.0, 0.0)),
	"Stock Ledger Entry": lambda: ("Stock Ledger Entry", stock_ledger_entry(valued=True)),
	"Work Order": lambda: ("Work Order", work_order()),
	"Job Card": lambda: ("Job Card", job_card_transitions()[-1]),
}


@pytest.mark.parametrize("shape", sorted(ERPNEXT_DOCUMENTS))
def test_the_shipped_schemas_get_a_writer_whose_bytes_are_fastavros(shape):
	doctype, doc = ERPNEXT_DOCUMENTS[shape]()
	schema, record = event_record(doc, doctype)
	write = compile_writer(schema.parsed)
	assert write is not None, f"{schema.label} should get a generated writer"
	assert write(record) == fastavro_bytes(schema.parsed, record)
	assert AvroEventSerializer(schema)(record) == fastavro_bytes(schema.parsed, record)


@for_each_fuzzed_doctype(150)
def test_every_record_the_builders_produce_is_written_as_fastavro_writes_it(doctype, data):
	doc = data.draw(documents(doctype))
	try:
		schema, record = event_record(doc, doctype)
	except BuildError:
		return  # a dead letter: nothing to encode
	assert compile_writer(schema.parsed)(record) == fastavro_bytes(schema.parsed, record)


# -- every supported type, and what the writer leaves to fastavro ----------------------------

ALL_TYPES_SCHEMA = EventSchema.build(
	{
		"type": "record",
		"name": "io.example.AllTypes",
		"fields": [
			{"name": "s", "type": "string"},
			{"name": "ns", "type": ["null", "string"]},
			{"name": "b", "type": "boolean"},
			{"name": "i", "type": "int"},
			{"name": "l", "type": "long"},
			{"name": "d", "type": "double"},
			{"name": "day", "type": {"type": "int", "logicalType": "date"}},
			{"name": "at", "type": {"type": "long", "logicalType": "timestamp-micros"}},
			{"name": "local", "type": ["null", {"type": "long", "logicalType": "local-timestamp-micros"}]},
			{"name": "clock", "type": {"type": "long", "logicalType": "time-micros"}},
			{"name": "amount", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 21, "scale": 9}]},
			{"name": "rows", "type": {"type": "array", "items": {"type": "record", "name": "Row", "fields": [
				{"name": "qty", "type": "double"}, {"name": "note", "type": ["string", "null"]}]}}},
			{"name": "again", "type": {"type": "array", "items": "io.example.Row"}},
			{"name": "one", "type": ["null", "io.example.Row"]},
		],
	},
	"Example",
	1,
	"test",
)  # fmt: skip
ALL_TYPES = ALL_TYPES_SCHEMA.parsed

finite = st.floats(allow_nan=False)
rows = st.lists(st.fixed_dictionaries({"qty": finite, "note": st.none() | st.text()}), max_size=3)
amounts = st.decimals(min_value=-(10**11), max_value=10**11, places=9, allow_nan=False, allow_infinity=False)
records = st.fixed_dictionaries(
	{
		"s": st.text(max_size=10_000),
		"ns": st.none() | st.text(),
		"b": st.booleans(),
		"i": st.integers(-(2**31), 2**31 - 1),
		"l": st.integers(-(2**63), 2**63 - 1),
		"d": st.floats(),
		"day": st.dates(),
		"at": st.datetimes(
			timezones=st.just(timezone.utc) | st.just(timezone(timedelta(hours=5, minutes=30)))
		),
		"local": st.none() | st.datetimes(),
		"clock": st.times(),
		"amount": st.none() | amounts,
		"rows": rows,
		"again": rows,
		"one": st.none() | st.fixed_dictionaries({"qty": finite, "note": st.none() | st.text()}),
	}
)


@settings(max_examples=400, deadline=None)
@given(record=records)
def test_every_supported_type_is_written_as_fastavro_writes_it(record):
	assert compile_writer(ALL_TYPES)(record) == fastavro_bytes(ALL_TYPES, record)


ODD_VALUES = st.one_of(
	st.none(),
	st.text(max_size=5),
	st.integers(),
	st.floats(),
	st.booleans(),
	st.decimals(),
	st.dates(),
	st.datetimes(),
	st.times(),
	st.binary(max_size=5),
	st.lists(st.integers(), max_size=2),
)


def outcome(encode, record):
	"""The bytes, or "refused" (fastavro raises its own exceptions, the serializer EncodeError)."""
	try:
		return encode(record)
	except Exception:
		return "refused"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=records, field=st.sampled_from([f["name"] for f in ALL_TYPES["fields"]]), value=ODD_VALUES)
def test_a_value_the_writer_does_not_take_is_left_to_fastavro(base, field, value):
	"""Whatever lands in a field, the serializer gives fastavro's bytes or refuses it as
	fastavro does (with EncodeError)."""
	record = {**base, field: value}
	serializer = AvroEventSerializer(ALL_TYPES_SCHEMA)
	try:
		expected = fastavro_bytes(ALL_TYPES, record)
	except Exception:
		with pytest.raises(EncodeError):
			serializer(record)
	else:
		assert serializer(record) == expected


def test_a_missing_field_is_left_to_fastavro_which_uses_the_default():
	event_schema = EventSchema.build(
		{
			"type": "record",
			"name": "R",
			"fields": [{"name": "a", "type": ["null", "string"], "default": None}],
		},
		"R",
		1,
		"test",
	)
	schema, serializer = event_schema.parsed, AvroEventSerializer(event_schema)
	with pytest.raises(KeyError):
		compile_writer(schema)({})
	assert serializer({}) == fastavro_bytes(schema, {}) == b"\x00"


def test_a_schema_with_a_type_the_generator_does_not_know_is_encoded_by_fastavro():
	event_schema = EventSchema.build(
		{
			"type": "record",
			"name": "R",
			"fields": [
				{"name": "colour", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
				{"name": "tags", "type": {"type": "map", "values": "string"}},
				{"name": "either", "type": ["string", "long"]},
			],
		},
		"R",
		1,
		"test",
	)
	schema = event_schema.parsed
	assert compile_writer(schema) is None
	record = {"colour": "GREEN", "tags": {"a": "b"}, "either": 7}
	assert AvroEventSerializer(event_schema)(record) == fastavro_bytes(schema, record)


def test_numbers_follow_the_avro_specification_examples():
	# Avro 1.11 specification, "Binary Encoding": zig-zag varints
	assert [long_bytes(n) for n in (0, -1, 1, -2, 2, -64, 64)] == [
		b"\x00", b"\x01", b"\x02", b"\x03", b"\x04", b"\x7f", b"\x80\x01"
	]  # fmt: skip
	assert long_bytes(2**63 - 1) == b"\xfe" + b"\xff" * 8 + b"\x01"
	# around each 7-bit group boundary, as fastavro writes them
	boundaries = {
		sign * (2**bits + delta) for bits in range(6, 63, 7) for delta in (-1, 0, 1) for sign in (1, -1)
	}
	assert [long_bytes(n) for n in sorted(boundaries)] == [
		fastavro_bytes("long", n) for n in sorted(boundaries)
	]
	# decimal: two's complement big-endian of the unscaled value, with its length
	assert decimal_bytes(Decimal("1.00"), 5, 2) == b"\x02" + (100).to_bytes(1, "big")
	assert decimal_bytes(Decimal("-1.28"), 5, 2) == b"\x04\xff\x80"  # fastavro's length rule: 2 bytes
	with pytest.raises(Fallback):
		decimal_bytes(Decimal("1.001"), 5, 2)  # more places than the scale
	with pytest.raises(Fallback):
		decimal_bytes(Decimal("NaN"), 5, 2)


def test_the_writer_takes_only_exact_classes():
	"""A subclass or a near miss (an int for a double, a datetime for a date, an aware time for a
	local timestamp) raises Fallback: fastavro decides what such a value means."""
	write = compile_writer(ALL_TYPES)
	base = {
		"s": "x", "ns": None, "b": True, "i": 1, "l": 2, "d": 1.5, "day": date(2024, 3, 1),
		"at": datetime(2024, 3, 1, tzinfo=timezone.utc), "local": None, "clock": time(9, 30),
		"amount": None, "rows": [], "again": [], "one": None,
	}  # fmt: skip
	assert write(base) == fastavro_bytes(ALL_TYPES, base)
	for field, value in [
		("d", 1),
		("day", datetime(2024, 3, 1)),
		("local", datetime(2024, 3, 1, tzinfo=timezone.utc)),
		("at", datetime(2024, 3, 1)),
		("i", 2**31),
		("i", True),
		("s", type("S", (str,), {})("x")),
	]:
		with pytest.raises(Fallback):
			write({**base, field: value})


def test_records_that_share_a_short_name_in_two_namespaces_stay_apart():
	schema = EventSchema.build(
		{
			"type": "record",
			"name": "Top",
			"fields": [
				{"name": "x", "type": {"type": "record", "name": "B", "fields": [{"name": "i", "type": "long"}]}},
				{"name": "y", "type": {"type": "record", "name": "b.B", "fields": [
					{"name": "i", "type": "long"}, {"name": "j", "type": "string"}]}},
				{"name": "z", "type": ["null", "B"]},
				{"name": "w", "type": ["null", "b.B"]},
			],
		},
		"Top",
		1,
		"test",
	)  # fmt: skip
	record = {"x": {"i": 1}, "y": {"i": 2, "j": "y"}, "z": {"i": 4, "j": "not in B"}, "w": {"i": 5, "j": "w"}}
	assert compile_writer(schema.parsed)(record) == fastavro_bytes(schema.parsed, record)


def test_a_record_value_that_is_not_a_plain_dict_is_left_to_fastavro():
	"""fastavro reads a mapping's missing keys through its defaults and takes union hints
	("-type"); the generated writer takes plain dicts without hints only."""
	schema = EventSchema.build(
		{
			"type": "record",
			"name": "R",
			"fields": [
				{"name": "tags", "type": ["null", {"type": "array", "items": "string"}], "default": None},
				{"name": "s", "type": "string", "default": "zz"},
				{"name": "one", "type": ["null", {"type": "record", "name": "E", "fields": []}]},
			],
		},
		"R",
		1,
		"test",
	)
	write, serializer = compile_writer(schema.parsed), AvroEventSerializer(schema)
	for record in (
		defaultdict(list, {"one": None}),
		{"tags": None, "s": "a", "one": 5},
		{"tags": None, "s": "a", "one": {"-type": "Other"}},
	):
		with pytest.raises(Fallback):
			write(record)
		assert outcome(serializer, record) == outcome(lambda r: fastavro_bytes(schema.parsed, r), record)
