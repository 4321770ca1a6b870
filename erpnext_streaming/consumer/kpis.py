"""Reference KPIs on the consumer kit, written the way a consumer team would write them.

Each class takes released `Event`s through `apply(event)` (feed it what `EventConsumer`
or `Reorderer` returns) and keeps its state in memory. They are built to converge: the
result depends on the set of events, not on their order, and applying an event twice
changes nothing (the kit already drops duplicates; the KPIs are idempotent anyway), so
late events and reversals simply correct the figures.

Ledger rows are identified by their business key, never by `name` (ERPNext renames GL
and stock ledger rows hourly): voucher type and number, voucher detail, item or account,
and the side (a reversal row swaps debit/credit or negates the quantity, so it is a row
of its own). When a row is seen again with a newer `modified` (a revaluation), the newer
version replaces the older one.
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


def _sign(value: float | Decimal | None) -> int:
	return ((value or 0) > 0 and 1) or ((value or 0) < 0 and -1) or 0


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

	def companies(self) -> list[str]:
		return sorted({company for company, _ in self.active})


class StockPosition:
	"""On-hand quantity, stock value and movement per (company, item, warehouse) from Stock
	Ledger Entry events. Quantity and value are sums over ledger rows (reversal rows cancel
	their originals; a revaluation of a row replaces its value); movement counts the in and
	out quantities of vouchers that stand (a cancelled voucher's moves drop out)."""

	def __init__(self):
		self.rows: dict[tuple, tuple[tuple, str, str, float, Decimal]] = {}
		self.cancelled_vouchers: set[tuple[str, str, str]] = set()

	def apply(self, event: Event) -> tuple[str, str, str] | None:
		"""Apply one event; returns the (company, item, warehouse) it touched, if any."""
		if event.doctype != "Stock Ledger Entry":
			return None
		d = event.document
		qty, value = d.get("actual_qty") or 0.0, d.get("stock_value_difference") or ZERO
		voucher = (event.company, d.get("voucher_type"), d.get("voucher_no"))
		if d.get("is_cancelled"):
			self.cancelled_vouchers.add(voucher)
		side = _sign(qty) or _sign(value)
		key = (*voucher, d.get("voucher_detail_no"), d.get("item_code"), d.get("warehouse"), side)
		known = self.rows.get(key)
		if known is None or _version(event) >= known[0]:
			self.rows[key] = (_version(event), d.get("item_code"), d.get("warehouse"), qty, value)
		return (event.company, d.get("item_code"), d.get("warehouse"))

	def positions(self) -> dict[tuple[str, str, str], dict[str, Any]]:
		out: dict[tuple, dict] = defaultdict(lambda: {"qty": 0.0, "value": ZERO, "in": 0.0, "out": 0.0})
		for (company, vtype, vno, *_), (_, item, warehouse, qty, value) in self.rows.items():
			position = out[(company, item, warehouse)]
			position["qty"] += qty
			position["value"] += value
			if (company, vtype, vno) not in self.cancelled_vouchers:
				position["in" if qty > 0 else "out"] += abs(qty)
		return dict(out)

	def on_hand(self, key: tuple[str, str, str]) -> float:
		return self.positions().get(key, {}).get("qty", 0.0)


class CashExposure:
	"""Balance (debit - credit, company currency) per company and account type from GL
	Entry events. `account_types` maps account names to Receivable, Payable, Cash, Bank, ...
	(your chart of accounts); unmapped accounts fall back to the party type (Customer ->
	Receivable, Supplier -> Payable) or the account name (Cash, Bank), else "Other"."""

	def __init__(self, account_types: Mapping[str, str] | None = None):
		self.account_types = dict(account_types or {})
		self.rows: dict[tuple, tuple[tuple, str, Decimal]] = {}

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
		net = (d.get("debit") or ZERO) - (d.get("credit") or ZERO)
		key = (
			event.company, d.get("voucher_type"), d.get("voucher_no"), d.get("voucher_detail_no"),
			d.get("account"), d.get("party"), d.get("cost_center"), _sign(net),
		)  # fmt: skip
		known = self.rows.get(key)
		if known is None or _version(event) >= known[0]:
			self.rows[key] = (_version(event), self.account_type(d), net)

	def balances(self) -> dict[tuple[str, str], Decimal]:
		out: Counter = Counter()
		for (company, *_), (_, account_type, net) in self.rows.items():
			out[(company, account_type)] += net
		return {key: Decimal(value) for key, value in out.items()}

	def exposure(self, company: str) -> dict[str, Decimal]:
		balances = self.balances()
		get = lambda t: balances.get((company, t), ZERO)  # noqa: E731
		return {"cash": get("Cash") + get("Bank"), "receivable": get("Receivable"), "payable": get("Payable")}


class JobCardTimes:
	"""Cycle time and idle time of completed Job Cards per (work_order, operation), in
	minutes: cycle = actual end - actual start, working = the time logs, idle = the rest.
	The newest state of each Job Card counts; a cancelled one drops out."""

	def __init__(self):
		self.cards: dict[tuple[str, str], tuple[tuple, dict]] = {}

	def apply(self, event: Event) -> None:
		if event.doctype != "Job Card":
			return
		key = (event.company, event.name)
		known = self.cards.get(key)
		if known is None or _version(event) >= known[0]:
			self.cards[key] = (_version(event), event.document)

	def per_operation(self) -> dict[tuple[str, str], dict[str, float]]:
		out: dict[tuple, dict] = defaultdict(
			lambda: {"job_cards": 0, "cycle": 0.0, "working": 0.0, "idle": 0.0}
		)
		for _, card in self.cards.values():
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


class WorkOrderBoard:
	"""Open work orders per company (submitted, not completed, stopped or closed), from the
	newest state of each Work Order."""

	DONE = frozenset({"Completed", "Stopped", "Closed", "Cancelled"})

	def __init__(self):
		self.orders: dict[tuple[str, str], tuple[tuple, dict]] = {}

	def apply(self, event: Event) -> None:
		if event.doctype != "Work Order":
			return
		key = (event.company, event.name)
		known = self.orders.get(key)
		if known is None or _version(event) >= known[0]:
			self.orders[key] = (_version(event), event.document)

	def open_orders(self, company: str) -> list[dict]:
		return [
			doc
			for (owner, _), (_, doc) in sorted(self.orders.items())
			if owner == company and doc.get("docstatus") == 1 and doc.get("status") not in self.DONE
		]
