"""Builders and the Avro codec on real Frappe documents and meta (bench twin of tests/test_builders.py).

Run on a bench with ERPNext: `bench --site SITE run-tests --app erpnext_streaming
--module erpnext_streaming.tests.test_event_builders`. Nothing is inserted: documents are
built in memory with `frappe.get_doc`, as the hooks see them.
"""

from datetime import date
from decimal import Decimal

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now, now_datetime

from erpnext_streaming.catalog import Route
from erpnext_streaming.emitters.builders import generic_to_dict, get_builder
from erpnext_streaming.emitters.codec import derive_from_meta, get_codec
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.tests.utils import decode


def sales_invoice():
	return frappe.get_doc(
		{
			"doctype": "Sales Invoice",
			"name": "ACC-SINV-TEST-00001",
			"docstatus": 1,
			"modified": now(),
			"company": "Test Company",
			"customer": "Test Customer",
			"posting_date": "2024-03-01",
			"posting_time": "10:15:03",
			"grand_total": 2469.135782468,
			"items": [
				{
					"name": "row-1",
					"idx": 1,
					"item_code": "ITEM-1",
					"qty": 2,
					"rate": 1234.567891234,
					"amount": 2469.135782468,
				}
			],
		}
	)


class TestEventBuilders(FrappeTestCase):
	def setUp(self):
		if not frappe.db.exists("DocType", "Sales Invoice"):
			self.skipTest("ERPNext is not installed")

	def test_a_real_document_and_its_child_rows_build_and_round_trip(self):
		doc = sales_invoice()
		body = get_builder("Sales Invoice")(doc)
		self.assertEqual(body["grand_total"], Decimal("2469.135782468"))
		self.assertEqual(body["items"][0]["rate"], Decimal("1234.567891234"))
		self.assertEqual(body["posting_date"], date(2024, 3, 1))
		route = Route(
			"Sales Invoice", "on_submit", "submit", "submitted", "erpnext.sales-invoice", 0, frozenset(), ""
		)
		codec = get_codec()
		record = {**codec.envelope(doc, route, now_datetime()), "document": body}
		schema = get_event_schema("Sales Invoice")
		self.assertEqual(decode(codec.serializer(schema)(record), schema), record)
		# the same values through `as_dict()` (which fills unset numbers with 0, hence only set fields)
		from_dict = get_builder("Sales Invoice")(frappe._dict(doc.as_dict()))
		for key in ("name", "company", "customer", "grand_total", "posting_date", "posting_time"):
			self.assertEqual(from_dict[key], body[key], key)
		self.assertEqual(from_dict["items"][0]["rate"], body["items"][0]["rate"])

	def test_a_schema_derives_from_real_meta(self):
		schema = derive_from_meta("ToDo")
		fields = {f["name"] for f in schema.document_schema["fields"]}
		self.assertLessEqual({"name", "docstatus", "status", "description", "date"}, fields)
		doc = frappe.get_doc({"doctype": "ToDo", "name": "T-1", "description": "x", "date": "2024-03-01"})
		self.assertEqual(generic_to_dict(doc, schema)["date"], date(2024, 3, 1))
