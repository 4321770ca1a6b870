"""The shipped .avsc files: self-contained event schemas with the envelope spliced in, fingerprinted."""

from __future__ import annotations

import json

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from erpnext_streaming import constants
from erpnext_streaming.schemas import (
	SchemaError,
	SchemaRegistry,
	UnknownSchemaError,
	default_registry,
	get_event_schema,
	shipped_doctypes,
)
from erpnext_streaming.schemas.derive import logical_canonical_form
from erpnext_streaming.schemas.registry import PACKAGE_DIR

BUILT_IN = (
	"GL Entry",
	"Job Card",
	"Payment Entry",
	"Payment Ledger Entry",
	"Sales Invoice",
	"Stock Ledger Entry",
	"Work Order",
)
ENVELOPE = json.loads((PACKAGE_DIR / "envelope.v1.avsc").read_text())
DECIMAL = {"type": "bytes", "logicalType": "decimal", "precision": 21, "scale": 9}


def walk_fields(record: dict, prefix: str = ""):
	for f in record["fields"]:
		yield prefix + f["name"], f
		kind = f["type"]
		if isinstance(kind, dict) and kind.get("type") == "array":
			kind = kind["items"]
		if isinstance(kind, dict) and kind.get("type") == "record":
			yield from walk_fields(kind, prefix + f["name"] + ".")


def test_the_built_in_doctypes_ship_a_v1_schema_each():
	assert shipped_doctypes() == BUILT_IN
	assert set(BUILT_IN) == {s.doctype for s in constants.BUILTIN_SPECS}
	for doctype in BUILT_IN:
		assert default_registry().versions(doctype) == (1,)
		assert get_event_schema(doctype) is get_event_schema(doctype, 1)  # parsed once, cached


@pytest.mark.parametrize("doctype", BUILT_IN)
def test_event_schema_opens_with_the_envelope_and_ends_with_the_document(doctype):
	schema = get_event_schema(doctype)
	record = schema.name.rpartition(".")[2]
	assert schema.name == f"io.erpnext.streaming.{doctype.replace(' ', '')}Event"
	assert schema.label == f"{record} v1"
	names = [f["name"] for f in schema.schema["fields"]]
	assert names == [f["name"] for f in ENVELOPE["fields"]] + ["document"]
	assert schema.schema["fields"][: len(ENVELOPE["fields"])] == ENVELOPE["fields"]
	assert "erpnext.envelope" not in schema.schema
	assert schema.schema["erpnext.doctype"] == doctype
	assert schema.document_schema["type"] == "record"


@pytest.mark.parametrize("doctype", BUILT_IN)
def test_every_field_has_a_doc_and_follows_the_type_rules(doctype):
	schema = get_event_schema(doctype)
	for path, field in walk_fields(schema.schema):
		assert field.get("doc"), f"{doctype}: {path} has no doc"
		kind = field["type"]
		if path.startswith("document.") and path.rpartition(".")[2] not in ("name", "docstatus", "idx"):
			# optional (null first, default null), boolean default false, or array default []
			if isinstance(kind, list):
				assert kind[0] == "null" and field["default"] is None, path
			elif kind == "boolean":
				assert field["default"] is False, path
			else:
				assert kind["type"] == "array" and field["default"] == [], path
		if isinstance(kind, list) and isinstance(kind[1], dict) and kind[1].get("logicalType") == "decimal":
			assert kind[1] == DECIMAL, path


def test_money_is_decimal_and_quantities_are_double():
	si = dict(walk_fields(get_event_schema("Sales Invoice").schema))
	assert si["document.grand_total"]["type"] == ["null", DECIMAL]
	assert si["document.items.amount"]["type"] == ["null", DECIMAL]
	assert si["document.items.qty"]["type"] == ["null", "double"]
	sle = dict(walk_fields(get_event_schema("Stock Ledger Entry").schema))
	assert sle["document.stock_value_difference"]["type"] == ["null", DECIMAL]
	assert sle["document.actual_qty"]["type"] == ["null", "double"]
	assert sle["document.is_cancelled"]["type"] == "boolean"
	assert sle["document.posting_datetime"]["type"] == [
		"null",
		{"type": "long", "logicalType": "local-timestamp-micros"},
	]


def test_child_tables_are_arrays_of_records():
	tables = {
		"Sales Invoice": {"items": "SalesInvoiceItem"},
		"Work Order": {"operations": "WorkOrderOperation", "required_items": "WorkOrderItem"},
		"Job Card": {"time_logs": "JobCardTimeLog"},
	}
	for doctype, children in tables.items():
		fields = {f["name"]: f for f in get_event_schema(doctype).document_schema["fields"]}
		for fieldname, record in children.items():
			assert fields[fieldname]["type"]["items"]["name"] == record


@pytest.mark.parametrize("doctype", BUILT_IN)
def test_canonical_form_and_fingerprint_match_fastavro(doctype):
	schema = get_event_schema(doctype)
	assert schema.canonical == to_parsing_canonical_form(schema.schema)
	assert schema.fingerprint == fastavro_fingerprint(schema.canonical, "CRC-64-AVRO")
	assert len(schema.fingerprint) == 16 and schema.fingerprint == schema.fingerprint.lower()


def crc64_avro_bitwise(data: bytes) -> int:
	"""CRC-64-AVRO computed bit by bit from the specification's constant (no table)."""
	empty = 0xC15D213AA4D7A795
	fp = empty
	for byte in data:
		fp ^= byte
		for _ in range(8):
			fp = (fp >> 1) ^ (empty if fp & 1 else 0)
	return fp


@pytest.mark.parametrize("doctype", BUILT_IN)
def test_fingerprint_is_crc64_avro_of_the_canonical_form_little_endian(doctype):
	schema = get_event_schema(doctype)
	expected = crc64_avro_bitwise(schema.canonical.encode()).to_bytes(8, "little").hex()
	assert schema.fingerprint == expected


def test_canonical_form_follows_the_specification_rules():
	schema = {
		"type": "record",
		"name": "Outer",
		"namespace": "x.y",
		"doc": "stripped",
		"fields": [
			{"name": "a", "type": {"type": "int"}, "doc": "stripped", "default": 1},
			{"name": "b", "type": {"type": "enum", "name": "E", "symbols": ["P", "Q"]}},
			{"name": "c", "type": ["null", "E"]},
			{"name": "d", "type": {"type": "fixed", "name": "z.F", "size": 4}},
			{"name": "é", "type": {"type": "int", "logicalType": "date"}},
		],
	}
	expected = (
		'{"name":"x.y.Outer","type":"record","fields":[{"name":"a","type":"int"},'
		'{"name":"b","type":{"name":"x.y.E","type":"enum","symbols":["P","Q"]}},'
		'{"name":"c","type":["null","x.y.E"]},{"name":"d","type":{"name":"z.F","type":"fixed","size":4}},'
		'{"name":"é","type":"int"}]}'
	)
	assert to_parsing_canonical_form(schema) == expected
	# derived versions keep the logical types, and only them
	assert logical_canonical_form(schema) == expected.replace(
		'"é","type":"int"', '"é","type":{"type":"int","logicalType":"date"}'
	)


def test_unknown_doctype_or_version_is_a_clear_error():
	with pytest.raises(UnknownSchemaError, match="no shipped event schema for doctype 'Purchase Order'"):
		get_event_schema("Purchase Order")
	with pytest.raises(
		UnknownSchemaError, match=r"Sales Invoice has no event schema version 7 \(shipped: \(1,\)\)"
	):
		get_event_schema("Sales Invoice", 7)


def test_a_file_named_for_another_doctype_is_refused(tmp_path):
	(tmp_path / "purchase_order.v1.avsc").write_text(
		json.dumps({"type": "record", "name": "X", "erpnext.doctype": "Sales Order", "fields": []})
	)
	with pytest.raises(SchemaError, match=r"'erpnext\.doctype' must name the doctype"):
		SchemaRegistry([PACKAGE_DIR, tmp_path])


def test_a_version_defined_twice_is_refused(tmp_path):
	(tmp_path / "sales_invoice.v1.avsc").write_text((PACKAGE_DIR / "sales_invoice.v1.avsc").read_text())
	with pytest.raises(SchemaError, match="version 1 is already defined"):
		SchemaRegistry([PACKAGE_DIR, tmp_path])
