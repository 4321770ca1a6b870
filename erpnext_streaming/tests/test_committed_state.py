"""The stream equals the ledger on a real ERPNext (issue 17, items 2 to 6 and 8): twins of
tests/test_capture.py, tests/test_handler.py and tests/test_envelope.py.

- drafts emit no change events (a draft Sales Invoice, a draft Work Order);
- a document's last event carries what ERPNext wrote after its hook: a Work Order's
  required items' consumed_qty (WorkOrder.update_status db_sets the status, then
  update_required_items db_sets consumed_qty with update_modified=False);
- a backfill after live capture gives the stock rows the same event ids;
- an invoice rolled back to a savepoint leaves no event even when the next invoice gets
  its name (the naming series is rolled back with it, as in erpnext/utilities/bulk_transaction.py);
- event_time of a GL Entry is its posting date (midnight in the site's time zone);
- a deadlock in the flush fails the user's commit.

Tests never commit (except the deadlock's, which MariaDB has rolled back), so the
before_commit flush is called directly (`flushed_events`).
"""

import threading
import time as clock
from datetime import datetime, time
from zoneinfo import ZoneInfo

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_days, flt, get_system_timezone, getdate, now_datetime, today

from erpnext_streaming import catalog
from erpnext_streaming.emitters import handler
from erpnext_streaming.emitters.codec import get_codec
from erpnext_streaming.operations import jobs
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.streaming_case import StreamingTestCase
from erpnext_streaming.tests.test_capture_erpnext import flushed_events
from erpnext_streaming.tests.utils import enable_streaming


class TestCommittedState(StreamingTestCase):
	def work_order(self, **args):
		"""A submitted-ready Work Order of a new finished item whose BOM takes one raw material
		(in stock in WAREHOUSE); ERPNext's own test helpers."""
		from erpnext.manufacturing.doctype.production_plan.test_production_plan import make_bom
		from erpnext.manufacturing.doctype.work_order.test_work_order import make_wo_order_test_record

		suffix = frappe.generate_hash(length=6)
		finished = erpnext_records.stock_item(f"_ES Test FG {suffix}").name
		raw = erpnext_records.stock_item(f"_ES Test RM {suffix}").name
		erpnext_records.stock_entry(item_code=raw, target=erpnext_records.WAREHOUSE, qty=10, basic_rate=10)
		bom = make_bom(
			item=finished, raw_materials=[raw], company=erpnext_records.COMPANY, currency="INR", rate=10
		)
		warehouse = erpnext_records.WAREHOUSE
		return make_wo_order_test_record(
			production_item=finished, bom_no=bom.name, qty=1, company=erpnext_records.COMPANY,
			source_warehouse=warehouse, wip_warehouse=warehouse, fg_warehouse=warehouse,
			stock_uom="Nos", skip_transfer=1, **args,
		)  # fmt: skip

	def test_a_draft_invoice_and_a_draft_work_order_emit_nothing(self):
		erpnext_records.sales_invoice(qty=1, rate=100, do_not_submit=1)
		order = self.work_order(do_not_submit=1)
		self.assertEqual(order.docstatus, 0)
		events = [(r.reference_doctype, r.event_type) for r in flushed_events()]
		self.assertFalse([e for e in events if e[0] in ("Sales Invoice", "Work Order")], events)

	def test_a_work_orders_last_event_carries_the_consumed_qty_written_after_its_hook(self):
		from erpnext.manufacturing.doctype.work_order.work_order import make_stock_entry

		order = self.work_order()
		flushed_events()
		entry = frappe.get_doc(make_stock_entry(order.name, "Manufacture", 1))
		entry.insert()
		entry.submit()
		events = [r for r in flushed_events() if r.reference_doctype == "Work Order"]
		self.assertTrue(events)
		last = events[-1].record["document"]
		committed = frappe.db.get_value("Work Order", order.name, ["status", "produced_qty"], as_dict=True)
		consumed = frappe.db.get_value("Work Order Item", {"parent": order.name}, "consumed_qty")
		self.assertEqual(flt(consumed), 1)
		self.assertEqual(float(last["required_items"][0]["consumed_qty"]), flt(consumed))
		self.assertEqual(
			(last["status"], last["produced_qty"]), (committed.status, flt(committed.produced_qty))
		)

	def test_a_backfill_after_live_capture_writes_no_new_event_id_for_stock_rows(self):
		erpnext_records.stock_entry(target=erpnext_records.WAREHOUSE, qty=20, basic_rate=100)
		flushed_events()
		invoice = erpnext_records.sales_invoice(update_stock=1, qty=2, rate=300)
		live = {r.event_id for r in flushed_events() if r.reference_doctype == "Stock Ledger Entry"}
		self.assertTrue(live)
		rows = [
			dict(row, doctype="Stock Ledger Entry")
			for row in frappe.db.sql(
				"SELECT * FROM `tabStock Ledger Entry` WHERE voucher_no = %s", (invoice.name,), as_dict=True
			)
		]
		route = catalog.get_catalog().route("Stock Ledger Entry", "on_submit")
		again = jobs.build_records(frappe.db, rows, route, get_codec(), now_datetime())
		self.assertEqual({r.event_id for r in again}, live)
		self.assertEqual(jobs.existing_event_ids(frappe.db, [r.event_id for r in again]), live)

	def test_an_invoice_rolled_back_to_a_savepoint_leaves_no_event_when_its_name_is_given_again(self):
		frappe.db.savepoint("bulk")
		phantom = erpnext_records.sales_invoice(qty=1, rate=100)
		frappe.db.rollback(save_point="bulk")
		real = erpnext_records.sales_invoice(qty=3, rate=100)
		self.assertEqual(real.name, phantom.name)  # the naming series was rolled back too
		events = flushed_events()
		invoices = [r for r in events if r.reference_doctype == "Sales Invoice"]
		self.assertEqual(
			[(r.event_type, float(r.record["document"]["grand_total"])) for r in invoices],
			[("submitted", 300.0)],
		)
		gl = {r.reference_name for r in events if r.reference_doctype == "GL Entry"}
		self.assertEqual(gl, set(frappe.get_all("GL Entry", {"voucher_no": real.name}, pluck="name")))

	def test_event_time_of_a_back_dated_gl_entry_is_its_posting_date(self):
		day = getdate(add_days(today(), -1))
		erpnext_records.sales_invoice(qty=1, rate=100, posting_date=day)
		gl = [r for r in flushed_events() if r.reference_doctype == "GL Entry"]
		self.assertTrue(gl)
		midnight = datetime.combine(day, time(), tzinfo=ZoneInfo(get_system_timezone()))
		self.assertEqual({r.record["event_time"] for r in gl}, {midnight})

	def test_a_deadlock_in_the_flush_fails_the_users_commit(self):
		"""Another session locks the company counters and waits for the invoice's row; the
		flush then waits for a counter: MariaDB rolls the lighter transaction, the user's,
		back (1213). The commit must raise, not report success for an invoice that is gone."""
		import pymysql

		invoice = erpnext_records.sales_invoice(qty=1, rate=100)
		conf = frappe.conf
		other = pymysql.connect(
			host=conf.db_host or "localhost", port=int(conf.db_port or 3306), user=conf.db_user or conf.db_name,
			password=conf.db_password, database=conf.db_name, autocommit=False, charset="utf8mb4",
		)  # fmt: skip
		try:
			cursor = other.cursor()
			cursor.execute("CREATE TEMPORARY TABLE heavy (n int) ENGINE=InnoDB")
			cursor.execute("INSERT INTO heavy SELECT seq FROM seq_1_to_20000")  # the heavier transaction
			cursor.execute("SELECT * FROM `tabStreaming Company Sequence` FOR UPDATE")
			query = "UPDATE `tabSales Invoice` SET remarks = remarks WHERE name = %s"
			waiter = threading.Thread(target=_quietly, args=(cursor.execute, query, (invoice.name,)))
			waiter.start()
			deadline = clock.monotonic() + 10
			waiting = (
				"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s AND INFO LIKE 'UPDATE%%'"
			)
			while not frappe.db.sql(waiting, (other.thread_id(),))[0][
				0
			]:  # its own threads: no PROCESS privilege
				self.assertLess(clock.monotonic(), deadline, "the other session never waited")
				clock.sleep(0.05)
			with self.assertRaises(Exception) as raised:
				frappe.db.commit()  # the flush waits on the other lock and fails: the commit must raise
			waiter.join(30)
		finally:
			other.rollback()
			other.close()
		self.assertTrue(handler.transaction_is_lost(raised.exception), raised.exception)
		frappe.db.rollback()
		self.assertFalse(frappe.db.exists("Sales Invoice", invoice.name))


def _quietly(call, *args):
	try:
		call(*args)
	except Exception:
		pass
