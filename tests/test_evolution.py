"""Schema evolution: every version reads every earlier version's data (BACKWARD_TRANSITIVE)."""

from __future__ import annotations

import json
import runpy
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from fixtures.erpnext import submitted_sales_invoice

from erpnext_streaming.emitters.builders import get_builder
from erpnext_streaming.emitters.envelope import build_envelope
from erpnext_streaming.schemas import SchemaRegistry
from erpnext_streaming.schemas.registry import PACKAGE_DIR
from erpnext_streaming.schemas.serializer import AvroEventSerializer
from erpnext_streaming.tests.utils import decode

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "schema_evolution.py"
evolution = SimpleNamespace(**runpy.run_path(str(SCRIPT)))
IncompatibleSchemaError = evolution.IncompatibleSchemaError


def registry(*folders: str) -> SchemaRegistry:
	return SchemaRegistry([PACKAGE_DIR, *(FIXTURES / f for f in folders)])


def test_shipped_schemas_are_backward_transitive_compatible():
	evolution.assert_compatible()
	assert evolution.check(mode=evolution.FULL_TRANSITIVE) == []


def test_an_incompatible_version_is_rejected_with_a_clear_message_per_problem():
	with pytest.raises(IncompatibleSchemaError) as raised:
		evolution.assert_compatible(registry("base", "incompatible"))
	assert raised.value.problems == [
		"ToyOrderEvent v2 cannot read v1: field 'document.customer' changed type from null|string to string",
		"ToyOrderEvent v2 cannot read v1: field 'document.region' was added without a default",
		"ToyOrderEvent v2 cannot read v1: field 'document.grand_total' changed type "
		"from null|decimal(21,9) to null|string",
		"ToyOrderEvent v2 cannot read v1: field 'document.items.rate' changed type "
		"from null|decimal(21,9) to null|decimal(21,6)",
	]
	assert str(raised.value).splitlines() == raised.value.problems


def test_added_fields_with_defaults_optional_and_widened_fields_are_accepted():
	compatible = registry("base", "compatible")
	assert evolution.check(compatible) == []
	# removing `notes` (no default in v1) is fine for new readers, not for old ones
	assert evolution.check(compatible, evolution.FORWARD_TRANSITIVE) == [
		"ToyOrderEvent v1 cannot read v2: field 'document.priority' changed type from null|int to int",
		"ToyOrderEvent v1 cannot read v2: field 'document.qty' changed type from double to int",
		"ToyOrderEvent v1 cannot read v2: field 'document.notes' was removed without a default",
	]


def test_fastavro_resolution_of_sample_records_catches_the_same_problems():
	incompatible = registry("base", "incompatible")
	v1, v2 = incompatible.get("Toy Order", 1), incompatible.get("Toy Order", 2)
	problems = evolution.resolution_problems(v2, v1)
	assert problems and all(p.startswith("reading a v1 record with every optional field") for p in problems)
	compatible = registry("base", "compatible")
	assert evolution.resolution_problems(compatible.get("Toy Order", 2), compatible.get("Toy Order", 1)) == []


def test_a_next_sales_invoice_version_with_an_optional_field_reads_v1_payloads(tmp_path):
	v1 = json.loads((PACKAGE_DIR / "sales_invoice.v1.avsc").read_text())
	document = v1["fields"][0]["type"]
	document["fields"].append(
		{"name": "incoterm", "type": ["null", "string"], "default": None, "doc": "Incoterm."}
	)
	status = next(f for f in document["fields"] if f["name"] == "loyalty_points")
	status["type"] = ["null", "long"]  # int -> long: a promotion
	(tmp_path / "sales_invoice.v2.avsc").write_text(json.dumps(v1))
	evolved = SchemaRegistry([PACKAGE_DIR, tmp_path])
	assert evolution.check(evolved) == []

	old, new = evolved.get("Sales Invoice", 1), evolved.get("Sales Invoice", 2)
	assert new.fingerprint != old.fingerprint
	doc = submitted_sales_invoice(items=2)
	record = build_envelope(doc, doc.doctype, "submitted", "s", datetime(2024, 3, 1), old)
	record["document"] = get_builder("Sales Invoice", 1)(doc)
	read = decode(AvroEventSerializer(old)(record), old, reader=new)
	assert read["document"]["incoterm"] is None
	assert read["document"]["grand_total"] == record["document"]["grand_total"]


def test_renaming_the_event_record_is_refused(tmp_path):
	v1 = json.loads((PACKAGE_DIR / "gl_entry.v1.avsc").read_text())
	v1["name"] = "LedgerRowEvent"
	(tmp_path / "gl_entry.v2.avsc").write_text(json.dumps(v1))
	assert evolution.check(SchemaRegistry([PACKAGE_DIR, tmp_path])) == [
		"LedgerRowEvent v2 cannot read v1: the record name changed from "
		"io.erpnext.streaming.GLEntryEvent to io.erpnext.streaming.LedgerRowEvent",
	]
