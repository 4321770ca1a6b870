"""The fieldnames this app relies on exist in the installed ERPNext (real bench only)."""

import frappe
from frappe.tests.utils import FrappeTestCase

from erpnext_streaming.constants import BUILTIN_SPECS
from erpnext_streaming.emitters.capture import SLE, SLE_VALUATION_FIELDS


class TestERPNextContract(FrappeTestCase):
	def test_state_fields_of_the_builtin_doctypes_exist(self):
		for spec in BUILTIN_SPECS:
			fields = {df.fieldname for df in frappe.get_meta(spec.doctype).fields}
			self.assertLessEqual(set(spec.state_fields), fields, spec.doctype)
			self.assertIn("company", fields, spec.doctype)

	def test_stock_ledger_valuation_fields_exist(self):
		fields = {df.fieldname for df in frappe.get_meta(SLE).fields}
		self.assertLessEqual(set(SLE_VALUATION_FIELDS), fields)

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
