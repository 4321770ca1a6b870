"""Generic derivation: an admin-added submittable doctype's meta -> a versioned event schema."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from types import SimpleNamespace

import pytest
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fixtures.erpnext import FakeDoc

from erpnext_streaming.emitters.builders import generic_to_dict, maskable_fields_of
from erpnext_streaming.emitters.envelope import build_envelope
from erpnext_streaming.schemas.derive import DERIVED_VERSION_BASE, child_doctypes, derive_schema
from erpnext_streaming.schemas.serializer import AvroEventSerializer
from erpnext_streaming.tests.utils import decode

# `frappe.get_meta("Equipment Handover").fields`, as DocField-like objects
META = [
	SimpleNamespace(fieldname="naming_series", fieldtype="Select", options="EQH-.YYYY.-", label="Series"),
	SimpleNamespace(fieldname="company", fieldtype="Link", options="Company", label="Company"),
	SimpleNamespace(fieldname="handover_date", fieldtype="Date", options=None, label="Handover Date"),
	SimpleNamespace(fieldname="handover_time", fieldtype="Time", options=None, label="Handover Time"),
	SimpleNamespace(fieldname="scheduled_at", fieldtype="Datetime", options=None, label="Scheduled At"),
	SimpleNamespace(fieldname="section_break_1", fieldtype="Section Break", options=None, label=""),
	SimpleNamespace(fieldname="equipment_value", fieldtype="Currency", options="currency", label="Value"),
	SimpleNamespace(fieldname="hours_used", fieldtype="Float", options=None, label="Hours Used"),
	SimpleNamespace(fieldname="wear", fieldtype="Percent", options=None, label="Wear"),
	SimpleNamespace(fieldname="units", fieldtype="Int", options=None, label="Units"),
	SimpleNamespace(fieldname="meter_reading", fieldtype="Long Int", options=None, label="Meter"),
	SimpleNamespace(fieldname="is_damaged", fieldtype="Check", options=None, label="Damaged"),
	SimpleNamespace(fieldname="notes", fieldtype="Text Editor", options=None, label="Notes"),
	SimpleNamespace(fieldname="pin", fieldtype="Password", options=None, label="PIN"),
	SimpleNamespace(fieldname="checklist", fieldtype="Table", options="Handover Check", label="Checklist"),
	SimpleNamespace(fieldname="spares", fieldtype="Table", options="Handover Check", label="Spares"),
	SimpleNamespace(fieldname="attachments", fieldtype="Table", options="Handover File", label="Files"),
	SimpleNamespace(fieldname="1st_reading", fieldtype="Float", options=None, label="First reading"),
	SimpleNamespace(fieldname="gauge", fieldtype="Fancy Widget", options=None, label="Gauge"),
	SimpleNamespace(
		fieldname="amended_from", fieldtype="Link", options="Equipment Handover", label="Amended"
	),
]
CHILD = [
	{"fieldname": "item", "fieldtype": "Data", "label": "Item"},
	{"fieldname": "ok", "fieldtype": "Check", "label": "OK"},
	{"fieldname": "measured", "fieldtype": "Float", "label": "Measured"},
	{"fieldname": "cost", "fieldtype": "Currency", "label": "Cost"},
]


def derived():
	return derive_schema("Equipment Handover", META, {"Handover Check": CHILD})


def types_of(record: dict) -> dict:
	return {f["name"]: f["type"] for f in record["fields"]}


def test_the_meta_becomes_a_self_contained_event_schema():
	schema = derived()
	assert schema.name == "io.erpnext.streaming.EquipmentHandoverEvent"
	assert schema.schema["erpnext.doctype"] == "Equipment Handover"
	assert [f["name"] for f in schema.schema["fields"]][:2] == ["event_id", "event_type"]
	document = types_of(schema.document_schema)
	assert document == {
		"name": "string",
		"docstatus": "int",
		"naming_series": ["null", "string"],
		"company": ["null", "string"],
		"handover_date": ["null", {"type": "int", "logicalType": "date"}],
		"handover_time": ["null", {"type": "long", "logicalType": "time-micros"}],
		"scheduled_at": ["null", {"type": "long", "logicalType": "local-timestamp-micros"}],
		"equipment_value": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 21, "scale": 9}],
		"hours_used": ["null", "double"],
		"wear": ["null", "double"],
		"units": ["null", "int"],
		"meter_reading": ["null", "long"],
		"is_damaged": "boolean",
		"notes": ["null", "string"],
		"checklist": {"type": "array", "items": document["checklist"]["items"]},
		"spares": {"type": "array", "items": "HandoverCheck"},  # the same child record, by name
		"amended_from": ["null", "string"],
	}
	assert [f["name"] for f in document["checklist"]["items"]["fields"]] == [
		"name",
		"idx",
		"item",
		"ok",
		"measured",
		"cost",
	]
	assert "Not streamed: attachments, 1st_reading, gauge." in schema.document_schema["doc"]
	assert child_doctypes(META) == ["Handover Check", "Handover File"]


def test_a_derived_record_round_trips():
	schema = derived()

	def check(i):
		return FakeDoc(
			"Handover Check", name=f"r{i}", idx=i, item=f"bolt {i}", ok=1, measured=1.25 * i, cost=0.1 * i
		)

	doc = FakeDoc(
		"Equipment Handover",
		name="EQH-2024-0001",
		docstatus=1,
		modified="2024-03-05 12:00:00.000001",
		company="Wind Power LLC",
		handover_date="2024-03-05",
		handover_time="11:58:00",
		scheduled_at=datetime(2024, 3, 5, 11, 0),
		equipment_value=1234.567891234,
		hours_used=12.75,
		wear=3.5,
		units=4,
		meter_reading=2**40,
		is_damaged=0,
		notes="<p>ok</p>",
		pin="secret",
		checklist=[check(1), check(2)],
		spares=[check(3)],
		attachments=[{"file": "x"}],
	)
	record = build_envelope(doc, "Equipment Handover", "submitted", "s", datetime(2024, 3, 5, 12), schema)
	record["document"] = generic_to_dict(doc, schema)
	payload = AvroEventSerializer(schema)(record)
	decoded = decode(payload, schema)
	assert decoded == record
	body = decoded["document"]
	assert body["equipment_value"] == Decimal("1234.567891234")
	assert (body["handover_date"], body["handover_time"]) == (date(2024, 3, 5), time(11, 58))
	assert [r["cost"] for r in body["checklist"]] == [Decimal("0.1"), Decimal("0.2")]
	assert body["spares"][0]["item"] == "bolt 3"
	assert "pin" not in body and "attachments" not in body
	assert decoded["schema_version"] == schema.version


def test_the_version_is_derived_from_the_fingerprint_and_stable():
	schema = derived()
	assert derived() is schema  # cached on the field definitions
	assert DERIVED_VERSION_BASE <= schema.version < 2**31
	# the same meta as dicts or tuples, relabelled: the same version
	as_tuples = [(f.fieldname, f.fieldtype, f.options, f"New {f.label}") for f in META]
	assert derive_schema("Equipment Handover", as_tuples, {"Handover Check": CHILD}).version == schema.version
	assert schema.version == 1534236108  # stable across processes, sites and releases
	# a new field, or a field turned from Date to Int, makes a new version
	more = derive_schema("Equipment Handover", [*META, ("driver", "Data")], {"Handover Check": CHILD})
	assert more.version != schema.version
	retyped = [("handover_date", "Int") if f.fieldname == "handover_date" else f for f in META]
	other = derive_schema("Equipment Handover", retyped, {"Handover Check": CHILD})
	assert other.fingerprint == schema.fingerprint  # the Parsing Canonical Form ignores logical types
	assert other.version != schema.version  # the derived version does not
	assert schema.fingerprint == fingerprint(to_parsing_canonical_form(schema.schema), "CRC-64-AVRO")


def test_a_table_without_child_meta_is_left_out():
	schema = derive_schema("Equipment Handover", META)
	assert "checklist" not in types_of(schema.document_schema)
	assert "Not streamed: checklist, spares, attachments" in schema.document_schema["doc"]


def test_masking_applies_to_derived_text_fields():
	assert {"notes", "company", "checklist.item", "spares.item"} <= maskable_fields_of(derived())
	assert not {"equipment_value", "checklist.cost", "is_damaged"} & maskable_fields_of(derived())


@pytest.mark.parametrize(
	"doctype, record",
	[("Sales Invoice", "SalesInvoice"), ("stock-entry 2", "StockEntry2"), ("3D Print", "D3DPrint")],
)
def test_record_names_come_from_the_doctype(doctype, record):
	schema = derive_schema(doctype, [("qty", "Float")])
	assert schema.name == f"io.erpnext.streaming.{record}Event"
