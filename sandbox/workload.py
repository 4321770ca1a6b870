"""A SYNTHETIC ERPNext workload: documents shaped like ERPNext v15's, made up by a seeded
random generator. No ERPNext runs here; nothing in it is real business data.

`Workload.next()` returns one `Transaction`: the documents a real transaction of that
kind would pass to the app's `doc_events` hooks, in hook order (ledger rows before their
voucher, as ERPNext fires them), plus the rows it leaves in ERPNext's tables (what the
capture flush reconciles against) and the ledger rows it flags `is_cancelled` by SQL.

Kinds, per company (3 by default): stock receipts, sales invoices with stock (SLE + GL:
debtors, sales, tax, COGS, stock; the invoice's Payment Ledger Entry), payments (GL
bank/debtors, a Payment Ledger Entry against the invoice, the Payment Entry, the invoice's
outstanding and status change), cancellations of unpaid invoices (reversal SLE and GL rows
with `is_cancelled = 1`, the stock reversal valued 0 as ERPNext leaves it, a Payment Ledger
reversal with `delinked = 1`; the originals flagged by SQL; then the cancelled invoice), valuation-only stock reconciliations
(an SLE with no quantity and a value difference), work orders (submit, progress,
completion) and their job cards (open, started, completed with time logs, submitted).

The generator keeps every document it made (`sles`, `gles`, `ples`, `invoices`, `job_cards`,
`work_orders`), so tests can compute the KPIs directly from the documents.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

COMPANIES = ("Acme Corp", "Globex Ltd", "Stark Industries")
ITEMS = ("BOLT-M12", "GEAR-40T", "SHAFT-1M", "BEARING-6204", "PANEL-A3")
OPERATIONS = ("Cutting", "Welding", "Assembly")
TAX_RATE = 0.18


class Doc(dict):
	"""A document as the hooks see it: attribute access, `.get()`, `get_doc_before_save()`."""

	def __init__(self, doctype: str, before: dict | None = None, **values: Any):
		super().__init__(doctype=doctype, **values)
		self._before = before

	def __getattr__(self, key: str) -> Any:
		try:
			return self[key]
		except KeyError:
			raise AttributeError(key) from None

	def get_doc_before_save(self) -> Doc | None:
		return Doc(self["doctype"], **self._before) if self._before is not None else None

	def as_dict(self) -> dict:
		return dict(self)


@dataclass
class Transaction:
	kind: str
	company: str
	hooks: list[tuple[Doc, str]] = field(default_factory=list)
	rows: list[tuple[str, dict]] = field(default_factory=list)  # (doctype, columns) to upsert
	cancels: list[tuple[str, str]] = field(default_factory=list)  # (doctype, name) flagged by SQL
	# (is_cancelled; delinked for Payment Ledger Entry)

	def hook(self, doc: Doc, method: str, row: bool = True) -> Doc:
		self.hooks.append((doc, method))
		if row:
			self.rows.append((doc.doctype, doc))
		return doc


def abbr(company: str) -> str:
	return "".join(word[0] for word in company.split()).upper()


def money(value: float) -> float:
	return round(value + 0.0, 2)


class Workload:
	"""Seeded generator of SYNTHETIC transactions (module doc)."""

	def __init__(
		self,
		seed: int = 7,
		companies: tuple[str, ...] = COMPANIES,
		clock: Callable[[], datetime] | None = None,
		start: datetime = datetime(2026, 11, 23, 9, 0, 0),
	):
		self.rng = random.Random(seed)
		self.companies = companies
		self._synthetic = start
		self.clock = clock or self._tick
		self._last_modified = datetime.min
		self._serial: dict[str, int] = {}
		self.stock: dict[tuple[str, str, str], list[float]] = {}  # (company, item, wh) -> [qty, value]
		self.sles: list[Doc] = []
		self.gles: list[Doc] = []
		self.ples: list[Doc] = []
		self.invoices: dict[str, Doc] = {}
		self.paid: set[str] = set()
		self.work_orders: dict[str, Doc] = {}
		self.job_cards: dict[str, Doc] = {}
		self._plans: list[list[Callable[[], Transaction]]] = []  # pending steps of work orders
		self._started = {c: False for c in companies}

	# -- time and names ---------------------------------------------------------------------

	def _tick(self) -> datetime:
		self._synthetic += timedelta(seconds=self.rng.randint(1, 20))
		return self._synthetic

	def _now(self) -> datetime:
		"""A strictly increasing `modified` (Frappe's wall clock, microseconds)."""
		moment = self.clock().replace(tzinfo=None)
		if moment <= self._last_modified:
			moment = self._last_modified + timedelta(microseconds=1)
		self._last_modified = moment
		return moment

	def _name(self, prefix: str) -> str:
		self._serial[prefix] = self._serial.get(prefix, 0) + 1
		return f"{prefix}-{self._serial[prefix]:05d}"

	def _hash(self) -> str:
		return f"{self.rng.getrandbits(40):010x}"

	# -- the mix ----------------------------------------------------------------------------

	def next(self) -> Transaction:
		for company in self.companies:
			if not self._started[company]:
				self._started[company] = True
				return self.stock_receipt(company, opening=True)
		if self._plans and self.rng.random() < 0.35:
			plan = self._plans[self.rng.randrange(len(self._plans))]
			step = plan.pop(0)
			if not plan:
				self._plans.remove(plan)
			return step()
		company = self.rng.choice(self.companies)
		roll = self.rng.random()
		unpaid = [
			n
			for n, d in self.invoices.items()
			if d["company"] == company and d["docstatus"] == 1 and n not in self.paid
		]
		if roll < 0.40:
			return self.sales_invoice(company)
		if roll < 0.55:
			return self.stock_receipt(company)
		if roll < 0.65 and unpaid:
			return self.payment(company, self.rng.choice(unpaid))
		if roll < 0.75 and unpaid:
			return self.cancel_invoice(self.rng.choice(unpaid))
		if roll < 0.82:
			return self.revaluation(company)
		return self.work_order(company)

	# -- stock and ledgers ------------------------------------------------------------------

	def _warehouse(self, company: str, kind: str = "Stores") -> str:
		return f"{kind} - {abbr(company)}"

	def _sle(
		self,
		company: str,
		item: str,
		warehouse: str,
		qty: float,
		value: float,
		voucher: tuple,
		moment: datetime,
	) -> Doc:
		position = self.stock.setdefault((company, item, warehouse), [0.0, 0.0])
		position[0] = round(position[0] + qty, 6)
		position[1] = money(position[1] + value)
		rate = money(position[1] / position[0]) if position[0] else 0.0
		sle = Doc(
			"Stock Ledger Entry",
			name=self._hash(), docstatus=1, modified=moment, company=company, item_code=item,
			warehouse=warehouse, posting_date=moment.date(), posting_time=moment.time(), posting_datetime=moment,
			voucher_type=voucher[0], voucher_no=voucher[1], voucher_detail_no=voucher[2], actual_qty=qty,
			stock_uom="Nos", incoming_rate=money(value / qty) if qty > 0 else 0.0,
			outgoing_rate=money(-value / qty) if qty < 0 else 0.0, qty_after_transaction=position[0],
			valuation_rate=rate, stock_value=position[1], stock_value_difference=money(value),
			is_cancelled=0, fiscal_year=str(moment.year),
		)  # fmt: skip
		self.sles.append(sle)
		return sle

	def _gl(
		self,
		company: str,
		account: str,
		debit: float,
		credit: float,
		voucher: tuple,
		moment: datetime,
		**extra,
	) -> Doc:
		gl = Doc(
			"GL Entry",
			name=self._hash(), docstatus=1, modified=moment, company=company, posting_date=moment.date(),
			account=account, debit=money(debit), credit=money(credit), debit_in_account_currency=money(debit),
			credit_in_account_currency=money(credit), voucher_type=voucher[0], voucher_no=voucher[1],
			voucher_detail_no=voucher[2] if len(voucher) > 2 else None, cost_center=f"Main - {abbr(company)}",
			is_cancelled=0, account_currency="USD", is_opening="No", fiscal_year=str(moment.year), **extra,
		)  # fmt: skip
		self.gles.append(gl)
		return gl

	def _ple(
		self, company: str, voucher: tuple, against: str, amount: float, moment: datetime, party: str
	) -> Doc:
		"""A receivable row as erpnext/accounts/utils.py get_payment_ledger_entries builds it. Named
		without a random draw, so the workload of a seed is the one it was before these rows."""
		ple = Doc(
			"Payment Ledger Entry",
			name=f"ple-{len(self.ples) + 1}", docstatus=1, modified=moment, company=company,
			posting_date=moment.date(), account_type="Receivable", account=f"Debtors - {abbr(company)}",
			party_type="Customer", party=party, voucher_type=voucher[0], voucher_no=voucher[1],
			against_voucher_type="Sales Invoice", against_voucher_no=against, amount=money(amount),
			amount_in_account_currency=money(amount), account_currency="USD", delinked=0,
		)  # fmt: skip
		self.ples.append(ple)
		return ple

	def stock_receipt(self, company: str, opening: bool = False) -> Transaction:
		tx = Transaction("stock receipt", company)
		moment = self._now()
		voucher_no = self._name(f"MAT-PRE-{abbr(company)}")
		total = 0.0
		for i, item in enumerate(ITEMS if opening else self.rng.sample(ITEMS, 2), 1):
			qty = float(self.rng.randint(40, 120) if opening else self.rng.randint(5, 40))
			value = money(qty * self.rng.uniform(8, 60))
			total += value
			tx.hook(self._sle(company, item, self._warehouse(company), qty, value, ("Purchase Receipt", voucher_no, f"pri-{voucher_no}-{i}"), moment), "on_submit")  # fmt: skip
		a = abbr(company)
		tx.hook(
			self._gl(company, f"Stock In Hand - {a}", total, 0, ("Purchase Receipt", voucher_no), moment),
			"on_submit",
		)
		tx.hook(self._gl(company, f"Stock Received But Not Billed - {a}", 0, total, ("Purchase Receipt", voucher_no), moment), "on_submit")  # fmt: skip
		return tx

	def sales_invoice(self, company: str) -> Transaction:
		tx = Transaction("sales invoice", company)
		moment = self._now()
		name = self._name(f"ACC-SINV-{abbr(company)}")
		a = abbr(company)
		items, cogs = [], 0.0
		for idx, item in enumerate(self.rng.sample(ITEMS, self.rng.randint(1, 3)), 1):
			on_hand, value = self.stock.get((company, item, self._warehouse(company)), [0.0, 0.0])
			qty = float(min(self.rng.randint(1, 6), int(on_hand)))
			if qty <= 0:
				continue
			rate = money(self.rng.uniform(70, 180))
			detail = f"sii-{name}-{idx}"
			items.append(
				{
					"name": detail, "idx": idx, "item_code": item, "item_name": item, "qty": qty, "rate": rate,
					"amount": money(qty * rate), "base_amount": money(qty * rate), "net_amount": money(qty * rate),
					"warehouse": self._warehouse(company), "income_account": f"Sales - {a}", "uom": "Nos",
					"stock_qty": qty, "stock_uom": "Nos", "conversion_factor": 1.0,
				}
			)  # fmt: skip
			out_value = -money(qty * (value / on_hand))
			cogs += -out_value
			tx.hook(self._sle(company, item, self._warehouse(company), -qty, out_value, ("Sales Invoice", name, detail), moment), "on_submit")  # fmt: skip
		if not items:
			return self.stock_receipt(company)
		net = money(sum(i["amount"] for i in items))
		tax = money(net * TAX_RATE)
		grand = money(net + tax)
		customer = f"CUST-{self.rng.randint(1, 12):03d}"
		voucher = ("Sales Invoice", name)
		tx.hook(self._gl(company, f"Debtors - {a}", grand, 0, voucher, moment, party_type="Customer", party=customer, against_voucher_type="Sales Invoice", against_voucher=name), "on_submit")  # fmt: skip
		tx.hook(self._gl(company, f"Sales - {a}", 0, net, voucher, moment, against=customer), "on_submit")
		tx.hook(
			self._gl(company, f"Output Tax - {a}", 0, tax, voucher, moment, against=customer), "on_submit"
		)
		tx.hook(self._gl(company, f"Cost of Goods Sold - {a}", money(cogs), 0, voucher, moment), "on_submit")
		tx.hook(self._gl(company, f"Stock In Hand - {a}", 0, money(cogs), voucher, moment), "on_submit")
		tx.hook(self._ple(company, voucher, name, grand, moment, customer), "on_submit")
		invoice = Doc(
			"Sales Invoice",
			name=name, docstatus=1, modified=moment, company=company, customer=customer, customer_name=customer,
			posting_date=moment.date(), posting_time=moment.time(), due_date=moment.date() + timedelta(days=30),
			currency="USD", conversion_rate=1.0, update_stock=1, debit_to=f"Debtors - {a}", total_qty=sum(i["qty"] for i in items),
			total=net, net_total=net, base_total=net, base_net_total=net, total_taxes_and_charges=tax,
			base_total_taxes_and_charges=tax, grand_total=grand, base_grand_total=grand, rounded_total=grand,
			base_rounded_total=grand, outstanding_amount=grand, status="Unpaid", is_return=0, items=items,
		)  # fmt: skip
		tx.hook(invoice, "on_submit")
		self.invoices[name] = invoice
		return tx

	def payment(self, company: str, invoice_name: str) -> Transaction:
		tx = Transaction("payment", company)
		moment = self._now()
		invoice = self.invoices[invoice_name]
		a = abbr(company)
		voucher = ("Payment Entry", self._name(f"ACC-PAY-{a}"))
		amount = invoice["outstanding_amount"]
		tx.hook(self._gl(company, f"Bank - {a}", amount, 0, voucher, moment), "on_submit")
		tx.hook(self._gl(company, f"Debtors - {a}", 0, amount, voucher, moment, party_type="Customer", party=invoice["customer"], against_voucher_type="Sales Invoice", against_voucher=invoice_name), "on_submit")  # fmt: skip
		tx.hook(self._ple(company, voucher, invoice_name, -amount, moment, invoice["customer"]), "on_submit")
		before = {k: invoice[k] for k in ("status", "outstanding_amount")}
		invoice.update(status="Paid", outstanding_amount=0.0, modified=moment)
		paid = Doc("Sales Invoice", before=before, **{k: v for k, v in invoice.items() if k != "doctype"})
		tx.hook(paid, "on_change")  # db_set of status and outstanding: only on_change fires
		reference = {"name": f"pref-{voucher[1]}", "idx": 1, "reference_doctype": "Sales Invoice",
			"reference_name": invoice_name, "allocated_amount": amount, "outstanding_amount": amount}  # fmt: skip
		payment = Doc("Payment Entry", name=voucher[1], docstatus=1, modified=moment, company=company,
			payment_type="Receive", posting_date=moment.date(), status="Submitted", party_type="Customer",
			party=invoice["customer"], paid_from=f"Debtors - {a}", paid_to=f"Bank - {a}", paid_amount=amount,
			received_amount=amount, total_allocated_amount=amount, references=[reference])  # fmt: skip
		tx.hook(payment, "on_submit")
		self.paid.add(invoice_name)
		return tx

	def cancel_invoice(self, invoice_name: str) -> Transaction:
		invoice = self.invoices[invoice_name]
		company = invoice["company"]
		tx = Transaction("cancellation", company)
		moment = self._now()
		for sle in [s for s in self.sles if s["voucher_no"] == invoice_name and not s["is_cancelled"]]:
			sle["is_cancelled"] = 1  # by raw SQL in ERPNext: no hook
			tx.cancels.append(("Stock Ledger Entry", sle["name"]))
			reversal = self._sle(company, sle["item_code"], sle["warehouse"], -sle["actual_qty"], -sle["stock_value_difference"], ("Sales Invoice", invoice_name, sle["voucher_detail_no"]), moment)  # fmt: skip
			reversal.update(is_cancelled=1, posting_date=sle["posting_date"], posting_time=sle["posting_time"], posting_datetime=sle["posting_datetime"])  # fmt: skip
			# ERPNext never values a cancelled row (update_entries_after skips it): the book above is
			# right, the row says 0
			reversal.update(
				stock_value_difference=0.0, qty_after_transaction=0.0, stock_value=0.0, valuation_rate=0.0
			)
			tx.hook(reversal, "on_submit")
		for gl in [g for g in self.gles if g["voucher_no"] == invoice_name and not g["is_cancelled"]]:
			gl["is_cancelled"] = 1
			tx.cancels.append(("GL Entry", gl["name"]))
			extra = {k: gl.get(k) for k in ("party_type", "party", "against_voucher_type", "against_voucher")}
			reversal = self._gl(company, gl["account"], gl["credit"], gl["debit"], ("Sales Invoice", invoice_name), moment, **extra)  # fmt: skip
			reversal.update(
				is_cancelled=1, posting_date=gl["posting_date"], remarks=f"On cancellation of {invoice_name}"
			)
			tx.hook(reversal, "on_submit")
		for ple in [p for p in self.ples if p["voucher_no"] == invoice_name and not p["delinked"]]:
			ple["delinked"] = 1  # delink_original_entry: a bulk UPDATE, no hook
			tx.cancels.append(("Payment Ledger Entry", ple["name"]))
			reversal = self._ple(company, ("Sales Invoice", invoice_name), ple["against_voucher_no"], -ple["amount"], moment, ple["party"])  # fmt: skip
			reversal.update(delinked=1)
			tx.hook(reversal, "on_submit")
		invoice.update(docstatus=2, status="Cancelled", outstanding_amount=0.0, modified=moment)
		tx.hook(Doc("Sales Invoice", **{k: v for k, v in invoice.items() if k != "doctype"}), "on_cancel")
		return tx

	def revaluation(self, company: str) -> Transaction:
		"""A valuation-only Stock Reconciliation: no quantity, a value difference."""
		tx = Transaction("revaluation", company)
		moment = self._now()
		item = self.rng.choice(ITEMS)
		on_hand, value = self.stock.get((company, item, self._warehouse(company)), [0.0, 0.0])
		if on_hand <= 0:
			return self.stock_receipt(company)
		delta = money(value * self.rng.uniform(-0.05, 0.08))
		voucher_no = self._name(f"MAT-RECO-{abbr(company)}")
		tx.hook(self._sle(company, item, self._warehouse(company), 0.0, delta, ("Stock Reconciliation", voucher_no, f"sri-{voucher_no}"), moment), "on_submit")  # fmt: skip
		a = abbr(company)
		debit, credit = (delta, 0.0) if delta >= 0 else (0.0, -delta)
		tx.hook(self._gl(company, f"Stock In Hand - {a}", debit, credit, ("Stock Reconciliation", voucher_no), moment), "on_submit")  # fmt: skip
		tx.hook(self._gl(company, f"Stock Adjustment - {a}", credit, debit, ("Stock Reconciliation", voucher_no), moment), "on_submit")  # fmt: skip
		return tx

	# -- manufacturing ----------------------------------------------------------------------

	def work_order(self, company: str) -> Transaction:
		tx = Transaction("work order", company)
		moment = self._now()
		a = abbr(company)
		name = self._name(f"MFG-WO-{a}")
		qty = float(self.rng.randint(5, 30))
		operations = self.rng.sample(OPERATIONS, self.rng.randint(1, 3))
		order = Doc(
			"Work Order",
			name=name, docstatus=1, modified=moment, company=company, status="Not Started",
			production_item=self.rng.choice(ITEMS), qty=qty, produced_qty=0.0,
			material_transferred_for_manufacturing=0.0, process_loss_qty=0.0, stock_uom="Nos",
			wip_warehouse=f"Work In Progress - {a}", fg_warehouse=self._warehouse(company, "Finished Goods"),
			planned_start_date=moment, operations=[
				{"name": f"woo-{name}-{i}", "idx": i, "operation": op, "status": "Pending", "time_in_mins": 30.0}
				for i, op in enumerate(operations, 1)
			],
		)  # fmt: skip
		tx.hook(order, "on_submit")
		self.work_orders[name] = order
		steps: list[Callable[[], Transaction]] = [lambda: self._progress(name, "In Process", 0.0)]
		for operation in operations:
			card = self._name(f"PO-JOB-{a}")
			steps += [
				lambda card=card, op=operation: self._job_card(card, name, op, "Open"),
				lambda card=card: self._job_card(card, name, None, "Work In Progress"),
				lambda card=card: self._job_card(card, name, None, "Completed"),
				lambda card=card: self._job_card(card, name, None, "submit"),
			]
		steps.append(lambda: self._progress(name, "Completed", qty))
		self._plans.append(steps)
		return tx

	def _progress(self, name: str, status: str, produced: float) -> Transaction:
		order = self.work_orders[name]
		tx = Transaction("work order progress", order["company"])
		moment = self._now()
		before = {
			k: order[k]
			for k in ("status", "produced_qty", "material_transferred_for_manufacturing", "process_loss_qty")
		}
		order.update(
			status=status,
			produced_qty=produced,
			material_transferred_for_manufacturing=order["qty"],
			modified=moment,
		)
		if status == "Completed":
			order["actual_end_date"] = moment
		else:
			order["actual_start_date"] = moment
		tx.hook(
			Doc("Work Order", before=before, **{k: v for k, v in order.items() if k != "doctype"}),
			"on_change",
		)
		return tx

	def _job_card(self, name: str, work_order: str, operation: str | None, step: str) -> Transaction:
		order = self.work_orders[work_order]
		company = order["company"]
		tx = Transaction("job card", company)
		moment = self._now()
		card = self.job_cards.get(name)
		if card is None:
			card = self.job_cards[name] = Doc(
				"Job Card",
				name=name, docstatus=0, company=company, work_order=work_order, operation=operation,
				production_item=order["production_item"], for_quantity=order["qty"], total_completed_qty=0.0,
				total_time_in_mins=0.0, workstation=f"{operation} Station", posting_date=moment.date(), time_logs=[],
			)  # fmt: skip
		before = {k: card.get(k) for k in ("status", "total_completed_qty")} if "status" in card else None
		card["modified"] = moment
		method = "on_update"
		if step == "Open":
			card["status"] = "Open"
		elif step == "Work In Progress":
			card.update(status="Work In Progress", actual_start_date=moment, job_started=1)
			card["time_logs"] = [{"name": f"jctl-{name}-1", "idx": 1, "employee": "HR-EMP-00001", "from_time": moment, "to_time": None, "time_in_mins": 0.0, "completed_qty": 0.0}]  # fmt: skip
		elif step == "Completed":
			start = card["actual_start_date"]
			working = (moment - start).total_seconds() / 60 * self.rng.uniform(0.5, 1.0)
			first_end = start + timedelta(minutes=working / 2)
			second_start = moment - timedelta(minutes=working / 2)
			half = round(order["qty"] / 2, 3)
			card["time_logs"] = [
				{"name": f"jctl-{name}-1", "idx": 1, "employee": "HR-EMP-00001", "from_time": start, "to_time": first_end, "time_in_mins": round(working / 2, 6), "completed_qty": half},
				{"name": f"jctl-{name}-2", "idx": 2, "employee": "HR-EMP-00002", "from_time": second_start, "to_time": moment, "time_in_mins": round(working / 2, 6), "completed_qty": order["qty"] - half},
			]  # fmt: skip
			card.update(status="Completed", actual_end_date=moment, job_started=0, total_completed_qty=order["qty"], total_time_in_mins=round(working, 6))  # fmt: skip
		else:
			card["docstatus"] = 1
			method = "on_submit"
		tx.hook(Doc("Job Card", before=before, **{k: v for k, v in card.items() if k != "doctype"}), method)
		return tx
