"""The fieldnames this app relies on exist in the installed ERPNext (real bench only)."""

import frappe
from frappe.tests.utils import FrappeTestCase

from erpnext_streaming.catalog import Route
from erpnext_streaming.constants import BUILTIN_SPECS
from erpnext_streaming.emitters.codec import get_codec


class TestERPNextContract(FrappeTestCase):
	def test_state_fields_of_the_builtin_doctypes_exist(self):
		for spec in BUILTIN_SPECS:
			fields = {df.fieldname for df in frappe.get_meta(spec.doctype).fields}
			self.assertLessEqual(set(spec.state_fields), fields, spec.doctype)
			self.assertIn("company", fields, spec.doctype)

	def test_the_child_tables_the_schemas_carry_are_read_again_at_flush(self):
		"""The flush completes each table of the body from its rows (codec.tables, from the meta)."""
		codec = get_codec()
		for spec in BUILTIN_SPECS:
			route = Route(spec.doctype, "on_submit", "submit", "submitted", "t", 0, frozenset(), "")
			fields = codec.schema(route).document_schema["fields"]
			carried = {
				f["name"] for f in fields if isinstance(f["type"], dict) and f["type"]["type"] == "array"
			}
			self.assertEqual({fieldname for fieldname, _ in codec.tables(route)}, carried, spec.doctype)

	def test_the_card_doctypes_are_submittable_or_inserted_with_submit(self):
		for doctype in ("Sales Invoice", "Work Order", "Job Card"):
			self.assertTrue(frappe.get_meta(doctype).is_submittable, doctype)

	def test_payment_schemas_use_erpnext_fieldnames(self):
		"""The Payment Entry and Payment Ledger Entry events carry ERPNext's own fieldnames."""
		from erpnext_streaming.schemas import get_event_schema

		for doctype in ("Payment Entry", "Payment Ledger Entry"):
			record = get_event_schema(doctype).document_schema
			fields = {df.fieldname for df in frappe.get_meta(doctype).fields} | {"name", "docstatus"}
			self.assertLessEqual({f["name"] for f in record["fields"]}, fields, doctype)
		references = get_event_schema("Payment Entry").document_schema["fields"][-1]["type"]["items"]
		fields = {df.fieldname for df in frappe.get_meta("Payment Entry Reference").fields}
		self.assertLessEqual({f["name"] for f in references["fields"]} - {"name", "idx"}, fields)
