"""The ERPNext Streaming workspace after migrate on a real bench (twin of tests/test_workspace.py):
the workspace, its number cards and charts exist and compute."""

import json
from datetime import timedelta

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, Status
from erpnext_streaming.outbox.write import write
from erpnext_streaming.tests.delivery_records import clear_delivery_tables, outbox_record


class TestWorkspace(FrappeTestCase):
	def setUp(self):
		clear_delivery_tables()  # "Oldest Pending" reads the delivery queue too
		now = now_datetime()
		write(
			frappe.db,
			[outbox_record(ref, "_ES Ws Co", status=status, prefix="ws-test") for ref, status in (
				("a", Status.QUEUED), ("b", Status.DEAD), ("c", Status.DEAD))],
			now - timedelta(minutes=3),
		)  # fmt: skip
		frappe.db.sql(f"UPDATE `tab{EVENT_LOG_DOCTYPE}` SET creation = %s", (now - timedelta(minutes=3),))

	def tearDown(self):
		frappe.db.rollback()

	def test_the_workspace_is_installed_with_its_cards_charts_and_links(self):
		workspace = frappe.get_doc("Workspace", "ERPNext Streaming")
		self.assertEqual(workspace.module, "ERPNext Streaming")
		self.assertEqual(
			[c.number_card_name for c in workspace.number_cards],
			[
				"Streaming Queued Events",
				"Streaming Failed Events",
				"Streaming Dead Letters",
				"Streaming Oldest Pending",
			],
		)
		self.assertEqual(
			[c.chart_name for c in workspace.charts],
			["Streaming Events per Minute", "Streaming Events by DocType"],
		)
		links = {link.link_to for link in workspace.links if link.type == "Link"}
		self.assertLessEqual({"Streaming Settings", "Streaming Event Log", "Streaming Backfill"}, links)
		self.assertEqual([r.role for r in workspace.roles], ["System Manager"])
		self.assertIsInstance(json.loads(workspace.content), list)

	def test_number_cards_compute(self):
		from frappe.desk.doctype.number_card.number_card import get_result

		for card, expected in (
			("Streaming Queued Events", 1),
			("Streaming Dead Letters", 2),
			("Streaming Failed Events", 0),
		):
			doc = frappe.get_doc("Number Card", card)
			self.assertEqual(get_result(doc.as_json(), doc.filters_json), expected, card)
		oldest = frappe.get_doc("Number Card", "Streaming Oldest Pending")
		self.assertEqual(oldest.type, "Custom")
		self.assertEqual(frappe.get_attr(oldest.method)(), "3m 00s")

	def test_charts_compute(self):
		from frappe.desk.doctype.dashboard_chart.dashboard_chart import get
		from frappe.desk.doctype.dashboard_chart_source.dashboard_chart_source import get_config

		by_doctype = get(chart_name="Streaming Events by DocType", refresh=1)
		self.assertEqual(by_doctype["labels"], ["GL Entry"])
		self.assertEqual(by_doctype["datasets"][0]["values"], [3])
		chart = frappe.get_doc("Dashboard Chart", "Streaming Events per Minute")
		self.assertIn("erpnext_streaming.api.events_per_minute", get_config(chart.source))
		data = frappe.get_attr("erpnext_streaming.api.events_per_minute")(chart_name=chart.name)
		values = {d["name"]: sum(d["values"]) for d in data["datasets"]}
		self.assertEqual(values, {"Queued": 1, "Sent": 0, "Failed": 0, "Dead": 2})
