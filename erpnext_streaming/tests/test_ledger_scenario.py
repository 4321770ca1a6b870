"""The stream equals the ledger on a real ERPNext (issue 17, "Must show"): a day of business
for two companies of the test's own, streamed to topics of this run by the app's drainer
(in-process, as test_reconcile.py), then `reconcile` of each company finds no difference
and a backfill of the ledgers after live capture writes no new event id.

The day: stock receipts in both companies; invoices with 1 and 20 items that update stock;
the cancellation of an invoice; two partial payments and the cancellation of one; a credit
note; a work order whose job card is completed, through manufacture; a stock
reconciliation; an invoice rolled back to a savepoint whose name the next invoice reuses.
Commits are savepoints and tearDown rolls everything back (test_reconcile.py).
Run: bench --site SITE run-tests --app erpnext_streaming --module erpnext_streaming.tests.test_ledger_scenario
"""

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import today

from erpnext_streaming.operations import reconcile, site
from erpnext_streaming.tests import erpnext_records, test_reconcile
from erpnext_streaming.tests.utils import commits_as_savepoints


class TestLedgerScenario(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.records = erpnext_records.ensure()

	tearDown = test_reconcile.TestReconcile.tearDown
	topics, drain, drain_once = (
		test_reconcile.TestReconcile.topics,
		test_reconcile.TestReconcile.drain,
		test_reconcile.TestReconcile.drain_once,
	)

	def setUp(self):
		test_reconcile.TestReconcile.setUp(self)  # the first company and this run's topics
		self.first = self.company
		fields = ("default_currency", "country", "chart_of_accounts", "enable_perpetual_inventory")
		self.second = frappe.get_doc(
			{
				"doctype": "Company",
				"company_name": f"{self.first.company_name} B",
				"abbr": f"{self.first.abbr}B",
			}
			| {f: self.first.get(f) for f in fields}
		).insert(ignore_permissions=True)

	def invoice(self, company, items, submit=True, **args):
		"""A Sales Invoice that updates stock: items = [(item_code, qty, rate)]."""
		first, *rest = items
		doc = erpnext_records.sales_invoice(
			company=company.name, debit_to=company.default_receivable_account,
			income_account=company.default_income_account, cost_center=company.cost_center,
			expense_account=company.default_expense_account, warehouse=f"Stores - {company.abbr}",
			item_code=first[0], qty=first[1], rate=first[2], update_stock=1, do_not_save=1, **args,
		)  # fmt: skip
		for item_code, qty, rate in rest:
			row = frappe.copy_doc(doc.items[0])
			row.update({"item_code": item_code, "item_name": item_code, "qty": qty, "rate": rate})
			doc.append("items", row)
		doc.insert()
		if submit:
			doc.submit()
		return doc

	def pay(self, invoice, amount):
		from erpnext.accounts.doctype.payment_entry.payment_entry import get_payment_entry

		payment = get_payment_entry("Sales Invoice", invoice.name)
		payment.update({"reference_no": "R-1", "reference_date": today(), "paid_amount": amount})
		payment.update({"received_amount": amount})
		payment.references[0].allocated_amount = amount
		payment.submit()
		return payment

	def manufacture(self, company, raw):
		"""A work order of a new item (BOM: `raw` and one operation); its job card completed;
		the Manufacture stock entry (ERPNext's own helpers, test_work_order.py)."""
		from erpnext.manufacturing.doctype.production_plan.test_production_plan import make_bom
		from erpnext.manufacturing.doctype.work_order.test_work_order import make_wo_order_test_record
		from erpnext.manufacturing.doctype.work_order.work_order import make_stock_entry

		suffix = frappe.generate_hash(length=6)
		workstation = frappe.get_doc(
			{"doctype": "Workstation", "workstation_name": f"_ES WS {suffix}"}
		).insert()
		operation = frappe.get_doc({"doctype": "Operation", "name": f"_ES Op {suffix}"}).insert()
		finished = erpnext_records.stock_item(f"_ES Scenario FG {suffix}").name
		bom = make_bom(
			item=finished, raw_materials=[raw], company=company.name, currency=erpnext_records.CURRENCY,
			rate=10, with_operations=1, do_not_save=1,
		)  # fmt: skip
		bom.append(
			"operations", {"operation": operation.name, "workstation": workstation.name, "time_in_mins": 10}
		)
		bom.insert()
		bom.submit()
		warehouse = f"Stores - {company.abbr}"
		order = make_wo_order_test_record(
			production_item=finished, bom_no=bom.name, qty=1, company=company.name,
			source_warehouse=warehouse, wip_warehouse=warehouse, fg_warehouse=warehouse,
			stock_uom="Nos", skip_transfer=1,
		)  # fmt: skip
		for name in frappe.get_all("Job Card", {"work_order": order.name}, pluck="name"):
			card = frappe.get_doc("Job Card", name)
			for row in card.scheduled_time_logs:
				card.append(
					"time_logs", {"from_time": row.from_time, "to_time": row.to_time, "time_in_mins": 10}
				)
			card.time_logs[0].completed_qty = 1
			card.submit()
		entry = frappe.get_doc(make_stock_entry(order.name, "Manufacture", 1))
		entry.insert()
		entry.submit()
		return order

	def journal_entry(self, company, lines):
		"""A Journal Entry of equal lines: its GL rows differ only by name (no voucher_detail_no)."""
		rows = [{"account": f"Cash - {company.abbr}", "debit_in_account_currency": 5}] * lines
		rows += [{"account": company.default_income_account, "credit_in_account_currency": 5}] * lines
		entry = frappe.get_doc(
			{"doctype": "Journal Entry", "company": company.name, "posting_date": today(), "accounts": rows}
		)
		for row in entry.accounts:
			row.cost_center = company.cost_center
		entry.insert()
		entry.submit()
		return entry

	def day_of_business(self):
		from erpnext.stock.doctype.stock_reconciliation.test_stock_reconciliation import (
			create_stock_reconciliation,
		)

		first, second = self.first, self.second
		items = [
			erpnext_records.stock_item(f"_ES Scenario {frappe.generate_hash(length=6)}").name
			for _ in range(20)
		]
		for company, receipts in ((first, items), (second, items[:1])):
			for item in receipts:
				erpnext_records.stock_entry(
					company=company.name,
					item_code=item,
					qty=50,
					basic_rate=10,
					target=f"Stores - {company.abbr}",
				)
		frappe.db.commit()  # one business transaction (a savepoint under commits_as_savepoints)
		single = self.invoice(first, [(items[0], 2, 50)])
		self.invoice(first, [(item, 1, 30) for item in items])
		self.invoice(second, [(items[0], 3, 40)])
		frappe.db.commit()  # the invoices' transaction ends
		cancelled = self.invoice(first, [(items[1], 1, 25)])
		frappe.db.commit()  # the invoice to cancel is submitted first
		cancelled.cancel()
		frappe.db.commit()  # the cancel is a later transaction
		self.pay(single, 30)
		frappe.db.commit()  # the first payment's transaction
		self.pay(single, 30).cancel()
		frappe.db.commit()  # the cancelled payment's transactions
		self.invoice(first, [(items[0], -1, 50)], is_return=1, return_against=single.name)  # credit note
		frappe.db.commit()  # the credit note's transaction
		self.manufacture(first, items[2])
		frappe.db.commit()  # the manufacture's transaction
		create_stock_reconciliation(
			company=first.name, item_code=items[3], warehouse=f"Stores - {first.abbr}", qty=60, rate=12,
			expense_account=f"Stock Adjustment - {first.abbr}", cost_center=first.cost_center,
		)  # fmt: skip
		self.invoice(first, [(items[3], 1, 30)])  # a move after the reconciliation
		self.journal_entry(first, lines=3)
		frappe.db.commit()  # the reconciliation, the sale and the journal entry
		frappe.db.savepoint("bulk")
		phantom = self.invoice(second, [(items[0], 1, 100)])
		frappe.db.rollback(save_point="bulk")
		real = self.invoice(second, [(items[0], 2, 100)])
		self.assertEqual(real.name, phantom.name)  # the naming series was rolled back too
		frappe.db.commit()  # the transaction with the savepoint rollback and the reused name

	def test_a_day_of_business_streams_the_ledgers_of_two_companies_exactly(self):
		with commits_as_savepoints():
			self.day_of_business()
			self.drain()
			written = {
				(ledger, company.name): site.backfill(ledger, company.name)[0].written
				for ledger in reconcile.LEDGERS
				for company in (self.first, self.second)
			}
		self.assertEqual({key: ids for key, ids in written.items() if ids}, {})
		lines = []
		for company in (self.first, self.second):
			self.company = company
			report = test_reconcile.TestReconcile.reconcile(self)
			lines += report.lines()
			self.assertEqual((report.problems, [d.text() for d in report.differences]), ([], []))
			self.assertGreaterEqual(report.companies[company.name]["vouchers_with_events"], 5)
		print("\n".join(["streaming reconcile:", *lines]))
