"""Revaluation after a real stock repost on ERPNext (twin of tests/test_revaluation.py).

A back-dated receipt makes ERPNext create a Repost Item Valuation, which runs at once in
tests (its on_submit reposts when frappe.flags.in_test) and ends with a db_set of status
"Completed": our on_change hook records the revaluation; the job then emits the stock
ledger rows the repost rewrote as `revalued` events with their new valuation."""

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_days, flt, today

from erpnext_streaming import catalog
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE
from erpnext_streaming.emitters import handler
from erpnext_streaming.emitters.envelope import event_id
from erpnext_streaming.operations import jobs
from erpnext_streaming.operations import site as ops
from erpnext_streaming.outbox.records import decode_payload
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.utils import commits_as_savepoints, decode, enable_streaming

SLE = "Stock Ledger Entry"
COMPANY = erpnext_records.COMPANY  # with perpetual inventory
WAREHOUSE = erpnext_records.WAREHOUSE


class TestRevaluationAfterRepost(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		erpnext_records.ensure()  # our company (perpetual inventory), fiscal years, warehouse

	def setUp(self):
		enable_streaming()
		frappe.flags.dont_execute_stock_reposts = False

	def tearDown(self):
		handler.clear()
		frappe.db.rollback()
		catalog.clear_cache()

	def test_a_backdated_receipt_reposts_and_the_rewritten_rows_stream_as_revalued(self):
		from erpnext.stock.doctype.stock_entry.stock_entry_utils import make_stock_entry

		item = erpnext_records.stock_item(f"_ES Revalued {frappe.generate_hash(length=6)}").name
		for _ in range(3):
			make_stock_entry(item_code=item, company=COMPANY, qty=1, rate=10, target=WAREHOUSE)
		consumption = make_stock_entry(item_code=item, company=COMPANY, qty=1, source=WAREHOUSE)
		consumed = frappe.get_value(
			SLE,
			{"voucher_no": consumption.name, "is_cancelled": 0},
			["name", "stock_value_difference"],
			as_dict=True,
		)
		self.assertEqual(flt(consumed.stock_value_difference), -10)
		handler.clear()

		# back-dated receipt at a higher rate: ERPNext reposts today's rows (in tests at once)
		receipt = make_stock_entry(
			item_code=item,
			company=COMPANY,
			qty=1,
			rate=50,
			target=WAREHOUSE,
			posting_date=add_days(today(), -1),
		)
		handler.clear()
		# "Transaction" based, or one per item and warehouse (Stock Reposting Settings)
		riv = frappe.get_all(
			"Repost Item Valuation",
			filters={"status": "Completed", "docstatus": 1},
			or_filters={"voucher_no": receipt.name, "item_code": item},
			pluck="name",
		)
		self.assertEqual(len(riv), 1, "ERPNext completed a repost for the back-dated receipt")
		(job,) = [
			j
			for j in jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION)
			if j.repost_item_valuation == riv[0]
		]
		self.assertEqual(job.status, "Queued")
		self.assertIn(item, [pair[0] for pair in job.scope])

		last = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `tab{EVENT_LOG_DOCTYPE}`")[0][0]
		with commits_as_savepoints():
			results = [r for r in ops.run_pending_revaluations() if r.job.name == job.name]
		self.assertEqual(len(results), 1)
		self.assertEqual(results[0].outcome, jobs.Outcome.COMPLETED, results[0].error)

		rows = frappe.db.sql(
			f"SELECT name, event_id, reference_name, event_type, topic, status, payload FROM `tab{EVENT_LOG_DOCTYPE}` "
			"WHERE name > %s AND event_type = 'revalued' ORDER BY name",
			(last,),
			as_dict=True,
		)
		sles = frappe.get_all(
			SLE,
			filters={"item_code": item, "warehouse": WAREHOUSE, "is_cancelled": 0},
			fields=["name", "modified", "stock_value_difference", "valuation_rate", "voucher_no"],
		)
		by_name = {s.name: s for s in sles}
		self.assertEqual({r.reference_name for r in rows}, set(by_name), "every row of the pair, once")
		self.assertEqual(len({r.event_id for r in rows}), len(rows))
		for row in rows:
			self.assertEqual((row.topic, row.status), ("erpnext.stock-ledger-entry", "Queued"))
			self.assertEqual(
				row.event_id,
				event_id(SLE, row.reference_name, "revalued", by_name[row.reference_name].modified),
			)
		consumption_event = next(r for r in rows if r.reference_name == consumed.name)
		record = decode(decode_payload(consumption_event.payload), get_event_schema(SLE))
		self.assertEqual(record["event_type"], "revalued")
		self.assertEqual(record["voucher_no"], consumption.name)
		# the consumption now takes the back-dated receipt's cost into its valuation
		self.assertEqual(
			record["document"]["stock_value_difference"], by_name[consumed.name].stock_value_difference
		)
		self.assertNotEqual(flt(by_name[consumed.name].stock_value_difference), -10)
		self.assertEqual(jobs.load(frappe.db, job.name).status, "Completed")

	def test_the_hook_ignores_reposts_that_are_not_completed(self):
		doc = frappe._dict(doctype="Repost Item Valuation", name="_ES RIV", docstatus=1, status="In Progress")
		before = len(jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION))
		ops.on_repost_change(doc, "on_change")
		self.assertEqual(len(jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION)), before)
