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
				"Streaming Last Reconcile",
			],
		)
		self.assertEqual(
			[c.chart_name for c in workspace.charts],
			["Streaming Events per Minute", "Streaming Events by DocType", "Streaming Events by Company"],
		)
		links = {link.link_to for link in workspace.links if link.type == "Link"}
		self.assertLessEqual({"Streaming Settings", "Streaming Event Log", "Streaming Backfill"}, links)
		self.assertEqual([r.role for r in workspace.roles], ["System Manager"])
		self.assertIsInstance(json.loads(workspace.content), list)

	def test_every_content_block_is_drawn(self):
		"""frappe/public/js/frappe/views/workspace/blocks/block.js make() draws a block only when
		the page data (frappe.desk.desktop.get_desktop_page) has an item of its kind whose label
		is the block's name; any other block is dropped without a word."""
		from frappe.desk.desktop import get_desktop_page

		page = get_desktop_page(
			json.dumps({"name": "ERPNext Streaming", "title": "ERPNext Streaming", "public": 1})
		)
		kinds = {
			"number_card": "number_card_name",
			"chart": "chart_name",
			"shortcut": "shortcut_name",
			"card": "card_name",
		}
		blocks = [
			b
			for b in json.loads(frappe.db.get_value("Workspace", "ERPNext Streaming", "content"))
			if b["type"] in kinds
		]
		self.assertEqual(len(blocks), 14)
		for block in blocks:
			labels = [item.get("label") for item in page[block["type"] + "s"]["items"]]
			self.assertIn(block["data"][kinds[block["type"]]], labels, block["id"])

	def test_no_help_text_is_swallowed_as_html(self):
		"""The desk puts descriptions into the form as HTML (form/controls/base_input.js set_description)."""
		for doctype in frappe.get_all("DocType", {"module": "ERPNext Streaming"}, pluck="name"):
			meta = frappe.get_meta(doctype)
			for text in [meta.description] + [df.description for df in meta.fields]:
				self.assertNotIn("<", text or "", doctype)

	def test_number_cards_compute_with_colours(self):
		for card, expected, colour in (
			("Streaming Queued Events", "1", "green"),
			("Streaming Dead Letters", "2", "red"),
			("Streaming Failed Events", "0", "green"),
			("Streaming Oldest Pending", "3m 00s", "orange"),
		):
			doc = frappe.get_doc("Number Card", card)
			self.assertEqual(doc.type, "Custom")
			html = frappe.get_attr(doc.method)(filters=doc.filters_json)
			self.assertEqual(html, f'<span style="color: var(--{colour}-600)">{expected}</span>', card)
		reconcile = frappe.get_doc("Number Card", "Streaming Last Reconcile")
		html = frappe.get_attr(reconcile.method)(filters=reconcile.filters_json)
		self.assertRegex(html, r"differences|never run")

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
