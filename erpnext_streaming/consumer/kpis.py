"""Reference KPIs on the consumer kit, written the way a consumer team would write them.

Each class takes released `Event`s through `apply(event)` (feed it what `EventConsumer`
or `Reorderer` returns) and keeps its state in memory. They are built to converge: the
result depends on the set of events, not on their order, and applying an event twice
changes nothing (the kit already drops duplicates; the KPIs are idempotent anyway), so
late events and reversals simply correct the figures.

A GL row is its voucher and `name` (a Journal Entry's equal lines have no voucher_detail_no:
only the name tells them apart; ERPNext renames the rows hourly, after their `posted` event).
A stock row is its business key (a `revalued` event may come after the rename): voucher,
voucher detail, item, warehouse and side (a reversal negates the quantity, so it is a row of
its own). When a row is seen again with a newer `modified` (a revaluation), the newer
version replaces the older one.

Cancellations follow ERPNext's reports (docs/consumer-guide.md, "Cancellations"): a cancel
posts reversal rows (GL and stock: is_cancelled = true; payment ledger: delinked = true)
and flags the rows they reverse by a bulk UPDATE that sends no event, so the originals stay
is_cancelled / delinked = false in the stream. `Reversals` applies the rule: a reversal
row and every row of its voucher posted before it (lower company sequence) are left out,
as ERPNext's General Ledger, Stock Balance and Accounts Receivable leave out
is_cancelled / delinked rows. (Summing originals and reversals does not do it: a stock
reversal row carries stock_value_difference 0, not the negated value.)
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from erpnext_streaming.consumer.decoding import Event

ZERO = Decimal(0)


def _minute(moment: datetime) -> datetime:
	return moment.replace(second=0, microsecond=0)


def _version(event: Event) -> tuple:
	"""Which of two events of the same row is newer: `modified`, then the company sequence."""
	return (event.modified or event.event_time, event.sequence or 0)


def _newer(rows: dict, key: tuple, event: Event) -> bool:
	"""Whether `event` is at least as new as the version of `rows[key]` kept so far."""
	known = rows.get(key)
	return known is None or _version(event) >= known[0]


def _sign(value: float | Decimal | None) -> int:
	return ((value or 0) > 0 and 1) or ((value or 0) < 0 and -1) or 0


class Reversals:
	"""Which ledger rows a cancel took out: ERPNext's bulk UPDATEs (erpnext/accounts/
	general_ledger.py make_reverse_gl_entries, erpnext/stock/stock_ledger.py set_as_cancel,
	erpnext/accounts/utils.py delink_original_entry) flag every row of the voucher that
	exists when the reversal rows are posted; rows posted later (a Landed Cost Voucher
	reposts its receipt's rows) stand."""

	def __init__(self):
		self.latest: dict[tuple, float] = {}  # group -> company sequence of its latest reversal row

	def note(self, group: tuple, event: Event, reversal: bool) -> None:
		if reversal:
			position = float("inf") if event.sequence is None else event.sequence
			self.latest[group] = max(position, self.latest.get(group, -1))

	def stands(self, group: tuple, posted: int | None, reversal: bool) -> bool:
		return not reversal and (posted or 0) > self.latest.get(group, -1)


def _posted(known: tuple | None, event: Event) -> int | None:
	"""Where the row was posted in the company order: a revaluation keeps the row's place; a row
	posted again under the same key (a re-post) takes the new one."""
	return known[1] if known and event.event_type == "revalued" else event.sequence


class RevenueVelocity:
	"""Sales invoices per minute and their value (base_grand_total) per company, net of
	cancellations: a cancelled invoice leaves its minute, whatever the order of arrival."""

	def __init__(self, window: timedelta = timedelta(minutes=5)):
		self.window = window
		self.active: dict[tuple[str, str], tuple[datetime, Decimal]] = {}
		self.cancelled: set[tuple[str, str]] = set()

	def apply(self, event: Event) -> None:
		if event.doctype != "Sales Invoice":
			return
		key = (event.company, event.name)
		if event.event_type == "cancelled":
			self.cancelled.add(key)
			self.active.pop(key, None)
		elif event.event_type == "submitted" and key not in self.cancelled:
			value = event.document.get("base_grand_total") or ZERO
			self.active[key] = (_minute(event.event_time), value)

	def per_minute(self, company: str) -> dict[datetime, tuple[int, Decimal]]:
		buckets: dict[datetime, list] = defaultdict(lambda: [0, ZERO])
		for (owner, _), (minute, value) in self.active.items():
			if owner == company:
				buckets[minute][0] += 1
				buckets[minute][1] += value
		return {minute: (count, value) for minute, (count, value) in sorted(buckets.items())}

	def totals(self, company: str) -> tuple[int, Decimal]:
		values = [value for (owner, _), (_, value) in self.active.items() if owner == company]
		return len(values), sum(values, ZERO)

	def velocity(self, company: str, until: datetime) -> tuple[float, Decimal]:
		"""Invoices per minute and value per minute over the `window` ending at `until`
		(pass the company's watermark for figures that late events will not change)."""
		start = until - self.window
		minutes = self.window.total_seconds() / 60
		inside = [v for m, v in self.per_minute(company).items() if start < m <= until]
		count, value = sum(c for c, _ in inside), sum((v for _, v in inside), ZERO)
		return count / minutes, value / Decimal(str(minutes))


class StockPosition:
	"""On-hand quantity, stock value and movement per (company, item, warehouse) from Stock
	Ledger Entry events, as ERPNext's Stock Balance computes them over the rows that stand
	(`Reversals`; a revaluation of a row replaces its values). In (posting_datetime, company
	order), the quantity adds each row's actual_qty, except a Stock Reconciliation row without
	batch, which sets it to its qty_after_transaction (its actual_qty is 0:
	erpnext/stock/report/stock_balance/stock_balance.py prepare_item_warehouse_map); the value is the sum of stock_value_difference;
	movement counts the rows' in and out quantities."""

	def __init__(self):
		self.rows: dict[tuple, tuple] = {}
		self.reversals = Reversals()

	def apply(self, event: Event) -> tuple[str, str, str] | None:
		"""Apply one event; returns the (company, item, warehouse) it touched, if any."""
		if event.doctype != "Stock Ledger Entry":
			return None
		d = event.document
		qty, value = d.get("actual_qty") or 0.0, d.get("stock_value_difference") or ZERO
		voucher = (event.company, d.get("voucher_type"), d.get("voucher_no"))
		reversal = bool(d.get("is_cancelled"))
		self.reversals.note(voucher, event, reversal)
		side = _sign(qty) or _sign(value)
		key = (*voucher, d.get("voucher_detail_no"), d.get("item_code"), d.get("warehouse"), side, reversal)
		if _newer(self.rows, key, event):
			sets = d.get("voucher_type") == "Stock Reconciliation" and not d.get("batch_no")
			after = (d.get("qty_after_transaction") or 0.0) if sets else None
			row = (d.get("item_code"), d.get("warehouse"), qty, value, d.get("posting_datetime"), after)
			self.rows[key] = (_version(event), _posted(self.rows.get(key), event), *row)
		return (event.company, d.get("item_code"), d.get("warehouse"))

	def positions(self) -> dict[tuple[str, str, str], dict[str, Any]]:
		out: dict[tuple, dict] = defaultdict(lambda: {"qty": 0.0, "value": ZERO, "in": 0.0, "out": 0.0})
		standing = (
			((row[4] or datetime.min, posted or 0), company, row)
			for (company, vtype, vno, *_, reversal), (_, posted, *row) in self.rows.items()
			if self.reversals.stands((company, vtype, vno), posted, reversal)
		)
		for _, company, (item, warehouse, qty, value, _, after) in sorted(standing, key=lambda r: r[0]):
			position = out[(company, item, warehouse)]
			position["qty"] = position["qty"] + qty if after is None else after
			position["value"] += value
			position["in" if qty > 0 else "out"] += abs(qty)
		return dict(out)

	def on_hand(self, key: tuple[str, str, str]) -> float:
		return self.positions().get(key, {}).get("qty", 0.0)


class CashExposure:
	"""Debit and credit (company currency) per account, and balance per company and account
	type, from GL Entry events: the rows that stand (`Reversals`), as ERPNext's General
	Ledger shows them. `account_types` maps account names to Receivable, Payable, Cash,
	Bank, ... (your chart of accounts); unmapped accounts fall back to the party type
	(Customer -> Receivable, Supplier -> Payable) or the account name (Cash, Bank), else "Other"."""

	def __init__(self, account_types: Mapping[str, str] | None = None):
		self.account_types = dict(account_types or {})
		self.rows: dict[tuple, tuple] = {}
		self.reversals = Reversals()

	def account_type(self, doc: dict) -> str:
		account = doc.get("account") or ""
		if account in self.account_types:
			return self.account_types[account]
		party_type = {"Customer": "Receivable", "Supplier": "Payable"}.get(doc.get("party_type") or "")
		return party_type or next((t for t in ("Cash", "Bank") if t in account), "Other")

	def apply(self, event: Event) -> None:
		if event.doctype != "GL Entry":
			return
		d = event.document
		debit, credit = d.get("debit") or ZERO, d.get("credit") or ZERO
		reversal = bool(d.get("is_cancelled"))
		self.reversals.note((event.company, d.get("voucher_type"), d.get("voucher_no")), event, reversal)
		key = (event.company, d.get("voucher_type"), d.get("voucher_no"), event.name, reversal)
		if _newer(self.rows, key, event):
			row = (d.get("account"), self.account_type(d), debit, credit)
			self.rows[key] = (_version(event), _posted(self.rows.get(key), event), *row)

	def standing(self):
		for (company, vtype, vno, *_, reversal), (_, posted, *row) in self.rows.items():
			if self.reversals.stands((company, vtype, vno), posted, reversal):
				yield (company, *row)

	def per_account(self) -> dict[tuple[str, str], tuple[Decimal, Decimal]]:
		"""(company, account) -> (debit, credit), as ERPNext's General Ledger totals them."""
		out: dict[tuple, list] = defaultdict(lambda: [ZERO, ZERO])
		for company, account, _, debit, credit in self.standing():
			out[(company, account)][0] += debit
			out[(company, account)][1] += credit
		return {key: (debit, credit) for key, (debit, credit) in out.items()}

	def balances(self) -> dict[tuple[str, str], Decimal]:
		out: Counter = Counter()
		for company, _, account_type, debit, credit in self.standing():
			out[(company, account_type)] += debit - credit
		return {key: Decimal(value) for key, value in out.items()}

	def exposure(self, company: str) -> dict[str, Decimal]:
		balances = self.balances()
		get = lambda t: balances.get((company, t), ZERO)  # noqa: E731
		return {"cash": get("Cash") + get("Bank"), "receivable": get("Receivable"), "payable": get("Payable")}


class PaymentLedger:
	"""Outstanding per (company, account_type, against_voucher_type, against_voucher_no) from
	Payment Ledger Entry events, as ERPNext computes it (erpnext/accounts/utils.py
	QueryPaymentLedger, the Accounts Receivable report): the sum of amount_in_account_currency
	(what an invoice's outstanding_amount is) or amount (company currency) over the rows not
	delinked. A row with delinked = true is a cancel's reversal; ERPNext delinked the rows it
	reverses (same company, account, party, voucher and against voucher) by a bulk UPDATE, so
	both are left out (`Reversals`). Row names are stable: a row is its name."""

	def __init__(self):
		self.rows: dict[tuple[str, str], tuple] = {}
		self.reversals = Reversals()

	@staticmethod
	def group(company: str, d: dict) -> tuple:
		fields = ("account", "party_type", "party", "voucher_type", "voucher_no", "against_voucher_type")
		return (company, *(d.get(f) for f in fields), d.get("against_voucher_no"))

	def apply(self, event: Event) -> None:
		if event.doctype != "Payment Ledger Entry":
			return
		d, key = event.document, (event.company, event.name)
		self.reversals.note(self.group(event.company, d), event, bool(d.get("delinked")))
		if _newer(self.rows, key, event):
			self.rows[key] = (_version(event), _posted(self.rows.get(key), event), d)

	def outstanding(self, in_account_currency: bool = True) -> dict[tuple[str, str, str, str], Decimal]:
		field = "amount_in_account_currency" if in_account_currency else "amount"
		out: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
		for (company, _), (_, posted, d) in self.rows.items():
			if self.reversals.stands(self.group(company, d), posted, bool(d.get("delinked"))):
				against = (d.get(f) for f in ("account_type", "against_voucher_type", "against_voucher_no"))
				out[(company, *against)] += d.get(field) or ZERO
		return dict(out)

	def receivable(self, company: str) -> Decimal:
		"""What customers owe the company, company currency."""
		totals = self.outstanding(in_account_currency=False).items()
		return sum((v for (owner, kind, *_), v in totals if owner == company and kind == "Receivable"), ZERO)


class _NewestState:
	"""The newest state of each document of `doctype`, by (company, name)."""

	doctype = ""

	def __init__(self):
		self.docs: dict[tuple[str, str], tuple[tuple, dict]] = {}

	def apply(self, event: Event) -> None:
		key = (event.company, event.name)
		if event.doctype == self.doctype and _newer(self.docs, key, event):
			self.docs[key] = (_version(event), event.document)


class JobCardTimes(_NewestState):
	"""Cycle time and idle time of completed Job Cards per (work_order, operation), in
	minutes: cycle = actual end - actual start, working = the time logs, idle = the rest.
	The newest state of each Job Card counts; a cancelled one drops out."""

	doctype = "Job Card"

	def per_operation(self) -> dict[tuple[str, str], dict[str, float]]:
		out: dict[tuple, dict] = defaultdict(
			lambda: {"job_cards": 0, "cycle": 0.0, "working": 0.0, "idle": 0.0}
		)
		for _, card in self.docs.values():
			start, end = card.get("actual_start_date"), card.get("actual_end_date")
			if card.get("docstatus") == 2 or card.get("status") != "Completed" or not (start and end):
				continue
			cycle = (end - start).total_seconds() / 60
			working = sum(log.get("time_in_mins") or 0.0 for log in card.get("time_logs") or [])
			row = out[(card.get("work_order"), card.get("operation"))]
			row["job_cards"] += 1
			row["cycle"] += cycle
			row["working"] += working
			row["idle"] += max(cycle - working, 0.0)
		return dict(out)


class WorkOrderBoard(_NewestState):
	"""Open work orders per company (submitted, not completed, stopped or closed), from the
	newest state of each Work Order."""

	doctype = "Work Order"
	DONE = frozenset({"Completed", "Stopped", "Closed", "Cancelled"})

	def open_orders(self, company: str) -> list[dict]:
		return [
			doc
			for (owner, _), (_, doc) in sorted(self.docs.items())
			if owner == company and doc.get("docstatus") == 1 and doc.get("status") not in self.DONE
		]
