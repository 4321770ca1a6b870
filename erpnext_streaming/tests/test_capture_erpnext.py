"""Capture on a real ERPNext: submit and cancel a Sales Invoice with stock.

What ERPNext really does (facts file, "ERPNext ledger behaviour") decides what this
asserts: ledger rows fire before the invoice's own handler; SLE valuation is written
after on_submit, so the events must carry the values as committed; a cancel posts
reversal GL/SLE rows (is_cancelled = 1) and never fires on_cancel for ledger rows.
Tests never commit, so the before_commit flush is called directly.
"""

from zoneinfo import ZoneInfo

import frappe
from frappe.tests.utils import FrappeTestCase, change_settings
from frappe.utils import flt, get_system_timezone

from erpnext_streaming import catalog
from erpnext_streaming.constants import BUNDLE_TABLE, EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE
from erpnext_streaming.delivery import messages
from erpnext_streaming.emitters import handler
from erpnext_streaming.emitters.codec import derive_from_meta
from erpnext_streaming.outbox.records import decode_payload
from erpnext_streaming.schemas import get_event_schema, shipped_doctypes
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.delivery_records import NoRegistry, read_bundle
from erpnext_streaming.tests.streaming_case import StreamingTestCase
from erpnext_streaming.tests.utils import decode, enable_streaming


def flushed_events():
	"""Run the before_commit flush; return this transaction's new Event Log rows, decoded."""
	last = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `tab{EVENT_LOG_DOCTYPE}`")[0][0]
	handler.flush()
	rows = frappe.db.sql(
		f"SELECT * FROM `tab{EVENT_LOG_DOCTYPE}` WHERE name > %s ORDER BY name", (last,), as_dict=True
	)
	for row in rows:
		if row.reference_doctype in shipped_doctypes():
			schema = get_event_schema(row.reference_doctype, row.schema_version)
		else:
			schema = derive_from_meta(row.reference_doctype)
			assert (schema.version, schema.fingerprint) == (row.schema_version, row.schema_fingerprint)
		row.record = decode(decode_payload(row.payload), schema) if row.status == "Queued" else None
	return rows


class TestCaptureOnRealERPNext(StreamingTestCase):
	def test_submit_and_cancel_of_an_invoice_with_stock_stream_voucher_and_ledger_events(self):
		erpnext_records.stock_entry(target=erpnext_records.WAREHOUSE, qty=50, basic_rate=123.456789)
		flushed_events()  # the stock entry's own ledger rows

		invoice = erpnext_records.sales_invoice(update_stock=1, qty=3, rate=333.333333333)
		submitted = flushed_events()
		kinds = [(r.reference_doctype, r.event_type) for r in submitted]
		self.assertEqual(kinds[-1], ("Sales Invoice", "submitted"), kinds)
		self.assertIn(("Stock Ledger Entry", "posted"), kinds[:-1])  # ledger rows come first
		self.assertIn(("GL Entry", "posted"), kinds[:-1])
		self.assertNotIn(("Sales Invoice", "status_changed"), kinds)  # folded into "submitted"
		self.assertTrue(all(r.status == "Queued" for r in submitted), [r.last_error for r in submitted])

		doc = next(r.record for r in submitted if r.reference_doctype == "Sales Invoice")
		self.assertEqual(doc["document"]["name"], invoice.name)
		self.assertEqual(doc["company"], erpnext_records.COMPANY)
		self.assertEqual(float(doc["document"]["grand_total"]), flt(invoice.grand_total))
		self.assertEqual(len(doc["document"]["items"]), 1)

		# the SLE event carries the valuation as committed, not the empty values of on_submit
		sle_event = next(r for r in submitted if r.reference_doctype == "Stock Ledger Entry")
		committed = frappe.db.get_value(
			"Stock Ledger Entry",
			sle_event.reference_name,
			[
				"qty_after_transaction",
				"valuation_rate",
				"stock_value",
				"stock_value_difference",
				"actual_qty",
			],
			as_dict=True,
		)
		body = sle_event.record["document"]
		self.assertEqual(body["actual_qty"], -3)
		self.assertEqual(body["qty_after_transaction"], flt(committed.qty_after_transaction))
		self.assertNotEqual(flt(committed.stock_value_difference), 0)
		self.assertEqual(float(body["stock_value_difference"]), flt(committed.stock_value_difference))
		self.assertEqual(float(body["valuation_rate"]), flt(committed.valuation_rate))
		self.assertEqual(sle_event.record["voucher_no"], invoice.name)

		# GL rows balance: debits = credits, keyed by the voucher
		gl = [r.record for r in submitted if r.reference_doctype == "GL Entry"]
		self.assertAlmostEqual(
			sum(float(g["document"]["debit"]) for g in gl), sum(float(g["document"]["credit"]) for g in gl), 6
		)
		self.assertTrue(all(g["voucher_no"] == invoice.name for g in gl))

		invoice.reload()
		invoice.cancel()
		cancelled = flushed_events()
		kinds = [(r.reference_doctype, r.event_type) for r in cancelled]
		self.assertIn(("Sales Invoice", "cancelled"), kinds)
		reversal_sle = [r.record for r in cancelled if r.reference_doctype == "Stock Ledger Entry"]
		reversal_gl = [r.record for r in cancelled if r.reference_doctype == "GL Entry"]
		self.assertTrue(reversal_sle and reversal_gl, kinds)
		self.assertTrue(all(r["document"]["is_cancelled"] for r in reversal_sle + reversal_gl))
		self.assertEqual(reversal_sle[0]["document"]["actual_qty"], 3)  # negated
		self.assertNotIn(
			"cancelled", {r.event_type for r in cancelled if r.reference_doctype != "Sales Invoice"}
		)

	def test_the_flush_queues_the_transactions_events_as_one_bundle_of_ready_messages(self):
		"""The delivery queue gets ONE bundle for the invoice's company, its events in the
		rows' order as messages built in the site's context (source, time zone)."""
		erpnext_records.sales_invoice(qty=2, rate=150)
		last = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `{BUNDLE_TABLE}`")[0][0]
		queued = [r for r in flushed_events() if r.status == "Queued"]
		self.assertTrue(queued)
		got = frappe.db.sql(
			f"SELECT company, events, messages FROM `{BUNDLE_TABLE}` WHERE name > %s ORDER BY name",
			(last,),
			as_dict=True,
		)
		self.assertEqual([(b.company, b.events) for b in got], [(erpnext_records.COMPANY, len(queued))])
		self.assertEqual(messages.refs(got[0].messages), [r.name for r in queued])
		framer = NoRegistry()
		ready, failed = read_bundle(got[0].messages, framer)
		self.assertEqual(failed, {})
		self.assertEqual(framer.asked, [])  # schemaless: nothing left for a registry to frame
		time_zone = ZoneInfo(get_system_timezone())
		for message, row in zip(ready, queued, strict=True):
			self.assertEqual(
				(message.ref, message.topic, message.key, message.value),
				(row.name, row.topic, row.message_key, decode_payload(row.payload)),
			)
			headers = message.headers
			self.assertEqual(headers["ce_source"], frappe.local.site)
			self.assertEqual(headers["ce_subject"], f"{row.reference_doctype}/{row.reference_name}")
			self.assertEqual(headers["es_company_sequence"], str(row.company_sequence))
			moment = row.event_time or row.creation
			self.assertEqual(headers["ce_time"], moment.replace(tzinfo=time_zone).isoformat())

	def test_a_payment_streams_the_invoice_status_change_with_its_outstanding_amount(self):
		from erpnext.accounts.doctype.payment_entry.test_payment_entry import get_payment_entry

		invoice = erpnext_records.sales_invoice(qty=2, rate=150)
		flushed_events()
		payment = get_payment_entry("Sales Invoice", invoice.name)
		payment.reference_no, payment.reference_date = "streaming-test", frappe.utils.nowdate()
		payment.insert()
		payment.submit()
		events = [r for r in flushed_events() if r.reference_doctype == "Sales Invoice"]
		self.assertEqual([r.event_type for r in events], ["status_changed"])
		document = events[0].record["document"]
		self.assertEqual((document["status"], float(document["outstanding_amount"])), ("Paid", 0.0))

	def test_an_admin_added_submittable_doctype_streams_with_a_schema_derived_from_its_meta(self):
		settings = frappe.get_single(SETTINGS_DOCTYPE)
		settings.append(
			"event_catalog", {"document_type": "Stock Entry", "enabled": 1, "on_submit": 1, "on_cancel": 1}
		)
		settings.save()
		entry = erpnext_records.stock_entry(target=erpnext_records.WAREHOUSE, qty=5, basic_rate=10.5)
		events = [r for r in flushed_events() if r.reference_doctype == "Stock Entry"]
		self.assertEqual(
			[(r.event_type, r.status, r.topic) for r in events],
			[("submitted", "Queued", "erpnext.stock-entry")],
		)
		record = events[0].record
		self.assertEqual(record["document"]["name"], entry.name)
		self.assertEqual(len(record["document"]["items"]), 1)
		self.assertGreaterEqual(events[0].schema_version, 2**30)  # derived versions live above shipped ones

	def test_rollback_leaves_no_buffer_and_no_rows(self):
		erpnext_records.sales_invoice(qty=1, rate=100)
		self.assertTrue(getattr(frappe.local, handler.BUFFER_ATTR, None))
		frappe.db.rollback()
		self.assertIsNone(getattr(frappe.local, handler.BUFFER_ATTR, None))
		self.assertEqual(flushed_events(), [])

	@change_settings(SETTINGS_DOCTYPE, {"enabled": 0})
	def test_disabled_streaming_captures_nothing(self):
		catalog.clear_cache()
		erpnext_records.sales_invoice(qty=1, rate=100)
		self.assertEqual(flushed_events(), [])
