"""Benchmark inputs: documents shaped like ERPNext v15's, in the order its hooks fire.

Built from the test fixtures (`tests/fixtures/erpnext.py`: every field a real v15
document has, real fieldnames), renamed per transaction and spread over 3 companies:

- a Sales Invoice with 1 or 20 items, submitted with stock (`update_stock`): one Stock
  Ledger Entry per item (on_submit, valuation still empty: ERPNext writes it afterwards
  with `db_update()`), five GL Entries, one Payment Ledger Entry, the invoice's on_submit
  and the on_change that follows it;
- Work Order progress: one transaction per `db_set` of status and quantities (on_change);
- Job Card transitions: Open -> Work In Progress -> On Hold -> Completed (on_update and
  on_change), then the submit; one transaction per save.

`Transaction.rows` are what the transaction leaves in ERPNext's tables (the Stock Ledger
Entries with their final valuation): the capture flush reconciles against them.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator

from fixtures.erpnext import (
	SLE_VALUATION_ROW,
	WORK_ORDER_PROGRESS,
	FakeDoc,
	gl_entry,
	job_card_transitions,
	stock_ledger_entry,
	submitted_sales_invoice,
	work_order,
)

from sandbox.workload import Transaction, abbr

COMPANIES = ("Acme Corp", "Globex Ltd", "Stark Industries")
PAYMENT_LEDGER = "Payment Ledger Entry"


def _renamed(doc: FakeDoc, **values) -> FakeDoc:
	copied = copy.copy(doc)
	copied.__dict__.update(values)
	return copied


class Documents:
	"""Endless realistic transactions, round-robin over the companies, unique names."""

	def __init__(self, companies: tuple[str, ...] = COMPANIES):
		self.companies = itertools.cycle(companies)
		self.serial = itertools.count(1)
		self._invoices = {n: submitted_sales_invoice(items=n) for n in (1, 20)}

	def sales_invoice(self, items: int) -> Transaction:
		company, n = next(self.companies), next(self.serial)
		a = abbr(company)
		name = f"ACC-SINV-{a}-{n:07d}"
		template = self._invoices.setdefault(items, submitted_sales_invoice(items=items))
		rows = [_renamed(r, name=f"sii-{n}-{r.idx}", parent=name) for r in template.items]
		invoice = _renamed(template, name=name, company=company, items=rows, debit_to=f"Debtors - {a}")
		tx = Transaction("sales invoice", company)
		for row in rows:  # stock first: update_stock posts the SLEs before the GL
			sle = stock_ledger_entry(valued=False)
			sle.__dict__.update(
				name=f"sle-{n}-{row.idx}", company=company, voucher_no=name, voucher_detail_no=row.name,
				item_code=row.item_code, warehouse=f"Stores - {a}",
			)  # fmt: skip
			tx.hooks.append((sle, "on_submit"))
			tx.rows.append(("Stock Ledger Entry", _renamed(sle, **SLE_VALUATION_ROW)))
		grand, net, taxes = invoice.grand_total, invoice.net_total, invoice.total_taxes_and_charges
		for i, (account, debit, credit) in enumerate(
			(
				(f"Debtors - {a}", grand, 0.0),
				(f"Sales - {a}", 0.0, net),
				(f"Output Tax - {a}", 0.0, taxes),
				(f"Cost of Goods Sold - {a}", 1506.172827306 * items, 0.0),
				(f"Stock In Hand - {a}", 0.0, 1506.172827306 * items),
			)
		):
			gl = gl_entry(f"gle-{n}-{i}", account, debit, credit, company=company, voucher_no=name)
			tx.hook(gl, "on_submit")
		ple = FakeDoc(
			PAYMENT_LEDGER, name=f"ple-{n}", docstatus=1, company=company, account_type="Receivable",
			account=f"Debtors - {a}", party_type="Customer", party=invoice.customer, voucher_type="Sales Invoice",
			voucher_no=name, against_voucher_type="Sales Invoice", against_voucher_no=name, amount=grand,
			amount_in_account_currency=grand, account_currency="INR", posting_date=invoice.posting_date,
			modified=invoice.modified, delinked=0,
		)  # fmt: skip
		tx.hook(ple, "on_submit")
		tx.hook(invoice, "on_submit")
		tx.hooks.append((invoice, "on_change"))  # Document.submit() runs on_change after on_submit
		return tx

	def work_order_progress(self) -> Iterator[Transaction]:
		"""One Work Order's progress: one transaction per db_set (only on_change fires)."""
		company, n = next(self.companies), next(self.serial)
		doc = _renamed(work_order(), name=f"MFG-WO-{abbr(company)}-{n:07d}", company=company)
		for modified, values in WORK_ORDER_PROGRESS:
			before = {k: doc.get(k) for k in ("status", "produced_qty")}
			doc = _renamed(doc, modified=modified, **values)
			doc.__dict__["get_doc_before_save"] = lambda before=before: FakeDoc("Work Order", **before)
			tx = Transaction("work order progress", company)
			tx.hook(doc, "on_change")
			yield tx

	def job_card(self) -> Iterator[Transaction]:
		"""A Job Card's life: one transaction per save (each is its own request)."""
		company, n = next(self.companies), next(self.serial)
		name = f"PO-JOB-{abbr(company)}-{n:07d}"
		previous = None
		for card in job_card_transitions():
			card = _renamed(card, name=name, company=company)
			card.__dict__["get_doc_before_save"] = lambda prev=previous: prev
			tx = Transaction("job card", company)
			if card.docstatus == 1:
				tx.hook(card, "on_submit")
			else:
				tx.hook(card, "on_update")
				tx.hooks.append((card, "on_change"))  # save() runs on_update, then on_change
			previous = card
			yield tx


def mix(documents: Documents, count: int) -> list[Transaction]:
	"""A busy site's mix: mostly small invoices, some large ones, manufacturing progress."""
	out: list[Transaction] = []
	while len(out) < count:
		out.append(documents.sales_invoice(1))
		out.append(documents.sales_invoice(1))
		out.append(documents.sales_invoice(20))
		out.extend(documents.work_order_progress())
		out.extend(documents.job_card())
	return out[:count]
