"""Payments, cancellations and Overdue on a real ERPNext (issue 17 items 1 and 7).

What ERPNext does decides what this asserts: a payment's Payment Ledger Entry rows are
inserted with submit() and update the invoice's outstanding_amount with set_value before
set_status(update=True) (erpnext/accounts/utils.py update_voucher_outstanding); a cancel
posts reversal rows and flags the originals by bulk UPDATEs (delink_original_entry,
set_as_cancel); the daily update_invoice_status sets Overdue by a bulk UPDATE. The figures
the consumer kit computes from the events are compared with ERPNext's own. Tests never
commit: the before_commit flush is called directly.
"""

from unittest.mock import patch
from zoneinfo import ZoneInfo

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import add_days, flt, get_system_timezone, getdate, nowdate, today

from erpnext_streaming import catalog
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE
from erpnext_streaming.consumer import Decoder
from erpnext_streaming.consumer.kpis import CashExposure, PaymentLedger, StockPosition
from erpnext_streaming.emitters import handler
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.delivery_records import bundle_rows
from erpnext_streaming.tests.streaming_case import StreamingTestCase
from erpnext_streaming.tests.utils import commits_as_savepoints, enable_streaming


def last_log_row() -> int:
	return frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `tab{EVENT_LOG_DOCTYPE}`")[0][0]


def events_after(last: int) -> list:
	"""The Event Log rows written after `last`, as a consumer reads them: each framed as the
	drainer frames it and decoded by the consumer kit."""
	rows = frappe.db.sql(
		f"SELECT * FROM `tab{EVENT_LOG_DOCTYPE}` WHERE name > %s ORDER BY name", (last,), as_dict=True
	)
	assert all(r.status == "Queued" for r in rows), [r.last_error for r in rows]
	decoder = Decoder()
	return [  # the messages as the drainer reads them from the transaction's bundles
		decoder.decode(message.value, message.headers, topic=message.topic)
		for bundle in bundle_rows()
		for message in bundle["ready"]
		if message.ref > last
	]


def flushed() -> list:
	"""Run the before_commit flush; return this transaction's events, decoded by the kit."""
	last = last_log_row()
	handler.flush()
	return events_after(last)


def invoice_states(events, name: str) -> list[tuple]:
	return [
		(e.event_type, e.document["status"], flt(e.document["outstanding_amount"]))
		for e in events
		if e.doctype == "Sales Invoice" and e.name == name
	]


class TestPaymentsOnRealERPNext(StreamingTestCase):
	def pay(self, invoice, amount: float):
		from erpnext.accounts.doctype.payment_entry.payment_entry import get_payment_entry

		payment = get_payment_entry("Sales Invoice", invoice.name, party_amount=amount)
		payment.reference_no, payment.reference_date = "streaming-test", nowdate()
		payment.insert()
		payment.submit()
		return payment

	def test_payment_ledger_entry_streams_although_erpnext_does_not_mark_it_submittable(self):
		"""ERPNext inserts every row with submit() (erpnext/accounts/utils.py
		create_payment_ledger_entry), so on_submit fires; the catalog used to refuse it."""
		self.assertFalse(frappe.get_meta("Payment Ledger Entry").is_submittable)
		settings = frappe.get_single(SETTINGS_DOCTYPE)
		row = {"document_type": "Payment Ledger Entry", "enabled": 1, "on_submit": 1, "on_cancel": 0}
		settings.set("event_catalog", [{**row, "on_update_after_submit": 0, "on_change": 0}])
		settings.save()
		route = catalog.get_catalog().route("Payment Ledger Entry", "on_submit")
		self.assertEqual((route.event_type, route.topic), ("posted", "erpnext.payment-ledger-entry"))

	def test_partial_payments_a_cancelled_payment_and_a_credit_note_stream_every_outstanding(self):
		"""Issue 17 item 1: the second payment and its cancel changed the outstanding amount
		but not the status, and streamed nothing."""
		invoice = erpnext_records.sales_invoice(qty=1, rate=100)
		events = flushed()
		self.assertEqual(invoice_states(events, invoice.name), [("submitted", "Unpaid", 100.0)])

		first = self.pay(invoice, 30)
		got = flushed()
		self.assertEqual(invoice_states(got, invoice.name), [("status_changed", "Partly Paid", 70.0)])
		self.assertIn(
			("Payment Entry", first.name, "submitted"), [(e.doctype, e.name, e.event_type) for e in got]
		)
		ple = [e.document for e in got if e.doctype == "Payment Ledger Entry"]
		self.assertEqual(
			[(p["voucher_no"], p["against_voucher_no"], flt(p["amount"]), p["delinked"]) for p in ple],
			[(first.name, invoice.name, -30.0, False)],
		)
		events += got

		second = self.pay(invoice, 30)
		got = flushed()
		self.assertEqual(invoice_states(got, invoice.name), [("status_changed", "Partly Paid", 40.0)])
		events += got

		second.reload()
		second.cancel()
		got = flushed()
		self.assertEqual(invoice_states(got, invoice.name), [("status_changed", "Partly Paid", 70.0)])
		reversal = [e.document for e in got if e.doctype == "Payment Ledger Entry"]
		self.assertEqual(
			[(p["voucher_no"], flt(p["amount"]), p["delinked"]) for p in reversal],
			[(second.name, 30.0, True)],
		)
		self.assertIn(("Payment Entry", "cancelled"), [(e.doctype, e.event_type) for e in got])
		events += got

		note = erpnext_records.sales_invoice(
			qty=-1, rate=10, is_return=1, return_against=invoice.name, do_not_save=True
		)
		note.update_outstanding_for_self = 0  # the credit note reduces the invoice's outstanding
		note.insert()
		note.submit()
		got = flushed()
		self.assertEqual([s[2] for s in invoice_states(got, invoice.name)], [60.0])
		events += got

		# receivables from the Payment Ledger events = ERPNext's outstanding (invoice and ledger)
		payments = PaymentLedger()
		for event in events:
			payments.apply(event)
		company = erpnext_records.COMPANY
		outstanding = payments.outstanding()[(company, "Receivable", "Sales Invoice", invoice.name)]
		self.assertEqual(
			flt(outstanding), flt(frappe.db.get_value("Sales Invoice", invoice.name, "outstanding_amount"))
		)
		ledger = frappe.db.sql(
			"SELECT SUM(amount_in_account_currency) FROM `tabPayment Ledger Entry`"
			" WHERE delinked = 0 AND against_voucher_type = 'Sales Invoice' AND against_voucher_no = %s",
			(invoice.name,),
		)[0][0]
		self.assertEqual((flt(outstanding), flt(ledger)), (60.0, 60.0))

	def test_the_daily_job_emits_the_overdue_status_erpnext_set_with_a_bulk_update(self):
		from erpnext.controllers.accounts_controller import update_invoice_status

		invoice = erpnext_records.sales_invoice(qty=1, rate=100)  # due today
		flushed()
		tomorrow = getdate(add_days(today(), 1))
		with patch(
			"erpnext.controllers.accounts_controller.getdate",
			lambda *args: getdate(*args) if args else tomorrow,
		):
			update_invoice_status()  # ERPNext's daily job, run as if it were tomorrow
		self.assertEqual(frappe.db.get_value("Sales Invoice", invoice.name, "status"), "Overdue")
		self.assertEqual(flushed(), [])  # the bulk UPDATE fired no hook

		for expected in ([("status_changed", "Overdue", 100.0)], []):  # the second run finds nothing new
			last = last_log_row()
			with commits_as_savepoints():
				handler.emit_changes_without_hook()
			self.assertEqual(invoice_states(events_after(last), invoice.name), expected)

	def test_the_kit_counts_a_cancelled_invoice_as_the_stock_balance_and_general_ledger_do(self):
		"""Issue 17 item 7: the reversal stock row carries stock_value_difference 0 and the
		originals stay is_cancelled = false in the stream."""
		item, warehouse = erpnext_records.ITEM, erpnext_records.WAREHOUSE
		before = self.stock_balance(item, warehouse)
		receipt = erpnext_records.stock_entry(target=warehouse, qty=10, basic_rate=7.5)
		events = flushed()
		invoice = erpnext_records.sales_invoice(update_stock=1, qty=2, rate=50)
		events += flushed()
		invoice.reload()
		invoice.cancel()
		got = flushed()
		reversal = [e.document for e in got if e.doctype == "Stock Ledger Entry"]
		self.assertEqual(
			[(r["actual_qty"], flt(r["stock_value_difference"])) for r in reversal], [(2.0, 0.0)]
		)
		events += got

		stock, ledger = StockPosition(), CashExposure()
		for event in events:
			stock.apply(event)
			ledger.apply(event)
		after = self.stock_balance(item, warehouse)
		position = stock.positions()[(erpnext_records.COMPANY, item, warehouse)]
		self.assertEqual(position["qty"], after[0] - before[0])
		self.assertAlmostEqual(flt(position["value"]), after[1] - before[1], 6)

		vouchers = (receipt.name, invoice.name)
		rows = frappe.db.sql(
			"SELECT account, SUM(debit), SUM(credit) FROM `tabGL Entry` WHERE is_cancelled = 0"
			" AND voucher_no IN %s GROUP BY account",
			(vouchers,),
		)
		expected = {(erpnext_records.COMPANY, a): (flt(dr), flt(cr)) for a, dr, cr in rows}
		got = {key: (flt(dr), flt(cr)) for key, (dr, cr) in ledger.per_account().items()}
		self.assertEqual(got, expected)

	@staticmethod
	def stock_balance(item: str, warehouse: str) -> tuple[float, float]:
		"""ERPNext's stock balance: the latest non-cancelled Stock Ledger Entry's qty and value
		(erpnext/stock/stock_ledger.py get_previous_sle)."""
		from erpnext.stock.stock_ledger import get_previous_sle

		sle = get_previous_sle(
			{"item_code": item, "warehouse_condition": None, "warehouse": warehouse,
			 "posting_date": add_days(today(), 1), "posting_time": "00:00:00"}
		)  # fmt: skip
		return flt(sle.get("qty_after_transaction")), flt(sle.get("stock_value"))
