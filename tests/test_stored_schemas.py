"""Schemas derived from an admin-added doctype's meta are stored by fingerprint when first
used (schemas/stored.py), so an event written before a Customize Form change can still be
framed for a Schema Registry and decoded by consumers (export-schemas writes every version).

Twin: erpnext_streaming/tests/test_encodings.py (TestStoredSchemas)."""

from __future__ import annotations

import json

import frappe
import pytest
from frappe import standin

from erpnext_streaming.delivery import jobs
from erpnext_streaming.emitters.codec import derive_from_meta
from erpnext_streaming.schemas import stored

pytestmark = pytest.mark.integration
DOCTYPE = "Equipment Handover"


def equipment_handover(*extra: dict) -> None:
	fields = [
		{"fieldname": "company", "fieldtype": "Link", "options": "Company", "label": "Company"},
		{"fieldname": "handover_date", "fieldtype": "Date", "label": "Handover Date"},
		*extra,
	]
	standin.register_doctype({"name": DOCTYPE, "module": "Custom", "is_submittable": 1, "fields": fields})


def test_a_derived_schema_outlives_a_change_of_its_doctype(site):
	equipment_handover()
	before = derive_from_meta(DOCTYPE)  # the capture of the first event derives it
	frappe.db.commit()  # the first event's transaction stored its schema
	equipment_handover({"fieldname": "hours_used", "fieldtype": "Float", "label": "Hours Used"})
	after = derive_from_meta(DOCTYPE)
	frappe.db.commit()  # a later transaction after the Customize Form change
	assert after.fingerprint != before.fingerprint

	old = jobs.writer_schema(DOCTYPE, before.version, before.fingerprint)  # an event written before
	assert (old.fingerprint, old.schema, old.version) == (before.fingerprint, before.schema, before.version)
	assert {s.fingerprint for s in stored.all_stored(frappe.db)} == {before.fingerprint, after.fingerprint}


def test_storing_twice_keeps_one_row(site):
	equipment_handover()
	derive_from_meta(DOCTYPE)
	derive_from_meta(DOCTYPE)
	assert len(stored.all_stored(frappe.db)) == 1


def test_export_schemas_writes_every_stored_version(site, tmp_path):
	from erpnext_streaming.operations import site as ops

	equipment_handover()
	before = derive_from_meta(DOCTYPE)
	equipment_handover({"fieldname": "hours_used", "fieldtype": "Float", "label": "Hours Used"})
	after = derive_from_meta(DOCTYPE)
	frappe.db.commit()  # both versions are stored before the export reads them
	ops.export_schemas(tmp_path)
	manifest = json.loads((tmp_path / "manifest.json").read_text())["schemas"]
	mine = {m["fingerprint"]: m for m in manifest if m["doctype"] == DOCTYPE}
	assert set(mine) == {before.fingerprint, after.fingerprint}
	assert {m["origin"] for m in mine.values()} == {"derived"}
