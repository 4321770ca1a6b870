"""Prove the stream equals the ledger: figures computed from the topics vs ERPNext's own.

`reconcile(consumer, db, scope, topics)` reads every message of the ledger topics once
(through the consumer kit: parts, decoding, duplicates) and the database, and compares
per company:

- vouchers: every (ledger, voucher_type, voucher_no) with ledger rows has events, and
  every voucher with events has rows (a rolled-back voucher must not be in the stream);
- GL debit and credit per account: ERPNext's General Ledger and Trial Balance read
  `tabGL Entry` with `is_cancelled = 0` (erpnext/accounts/report/general_ledger/
  general_ledger.py `get_conditions`); the stream side is the kit's
  `CashExposure.per_account` (its `Reversals` rule for cancellations);
- stock quantity and value per item and warehouse at `to_date`: ERPNext's Stock Balance
  walks the rows with `is_cancelled = 0` in (posting_datetime, creation) order, adding
  `actual_qty` (a Stock Reconciliation row sets the quantity) and `stock_value_difference`
  (erpnext/stock/report/stock_balance/stock_balance.py `prepare_item_warehouse_map`), which
  is the last such row's `qty_after_transaction` and `stock_value`; the stream side is the
  kit's `StockPosition` (same walk over the rows that stand by its `Reversals` rule);
- outstanding per invoice at `to_date`: Accounts Receivable sums Payment Ledger Entry
  `amount` with `delinked = 0` per against voucher (accounts_receivable.py); the stream
  side is the kit's `PaymentLedger.outstanding` in company currency.

Memory: figures are kept per ledger row (the kit's row identity: a repeated or
revalued event replaces its row, so duplicates count once) and per reported key; events
themselves are never held beyond the kit's reorder window.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from erpnext_streaming.consumer.decoding import Event
from erpnext_streaming.consumer.kpis import CashExposure, PaymentLedger, StockPosition

GL, SLE, PLE = "GL Entry", "Stock Ledger Entry", "Payment Ledger Entry"
LEDGERS = (GL, SLE, PLE)
TOLERANCE = Decimal("0.000001")
ZERO = Decimal(0)


@dataclass(frozen=True)
class Scope:
	"""One company (or all), and posting dates: GL and vouchers from `from_date` to
	`to_date`; balances (stock, outstanding) as of `to_date`."""

	company: str | None = None
	from_date: date | None = None
	to_date: date | None = None

	def covers(self, company: str, posting_date: date | None, balance: bool = False) -> bool:
		if self.company and company != self.company:
			return False
		if posting_date is None:
			return True
		if self.to_date and posting_date > self.to_date:
			return False
		return balance or not self.from_date or posting_date >= self.from_date

	def where(self, balance: bool = False) -> tuple[str, list]:
		"""SQL conditions (starting with AND) and values for the same scope."""
		sql, values = "", []
		for condition, value in (
			("`company` = %s", self.company),
			("`posting_date` >= %s", None if balance else self.from_date),
			("`posting_date` <= %s", self.to_date),
		):
			if value:
				sql, values = f"{sql} AND {condition}", [*values, value]
		return sql, values


@dataclass(frozen=True)
class Difference:
	company: str
	what: str  # voucher, gl, stock, outstanding
	key: tuple
	stream: Any
	erpnext: Any

	def text(self) -> str:
		return f"{self.what} {' / '.join(str(k) for k in self.key)}: stream {_shown(self.stream)}, ERPNext {_shown(self.erpnext)}"


@dataclass
class Report:
	companies: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
	differences: list[Difference] = field(default_factory=list)
	problems: list[str] = field(default_factory=list)  # a topic, schema or ledger that cannot be read
	messages: int = 0

	@property
	def ok(self) -> bool:
		return not self.differences and not self.problems

	def summary(self) -> dict[str, Any]:
		"""What is stored as the last result (cheap to show on the desk)."""
		return {
			"ok": self.ok,
			"messages": self.messages,
			"differences": len(self.differences),
			"problems": len(self.problems),
			"per_company": {c: dict(n) for c, n in sorted(self.companies.items())},
		}

	def lines(self, limit: int = 200) -> list[str]:
		out = [f"Problem: {p}" for p in self.problems]
		for company, n in sorted(self.companies.items()):
			out.append(
				f"{company}: {n['vouchers_with_events']:,} voucher(s) with events, "
				f"{n['vouchers_without_events']:,} without, {n['vouchers_only_in_stream']:,} only in the stream; "
				f"compared {n['accounts']:,} account(s), {n['stock_keys']:,} item/warehouse(s), "
				f"{n['invoices']:,} invoice(s): {n['differences']:,} difference(s)"
			)
		out += [f"  {d.company}: {d.text()}" for d in self.differences[:limit]]
		if len(self.differences) > limit:
			out.append(f"  ... and {len(self.differences) - limit:,} more")
		return out


def _shown(value: Any) -> str:
	if isinstance(value, tuple):
		return " / ".join(_shown(v) for v in value)
	if isinstance(value, int | float | Decimal):
		return format(Decimal(str(value)).normalize(), "f")
	return str(value)


class StreamFigures:
	"""The stream side, fed with every released event (`apply`): the consumer kit's
	`StockPosition`, `CashExposure` (GL per account) and `PaymentLedger` (outstanding)."""

	def __init__(self, scope: Scope):
		self.scope = scope
		self.stock, self.ledger, self.payments = StockPosition(), CashExposure(), PaymentLedger()
		self.vouchers: set[tuple] = set()  # (company, ledger, voucher type, voucher no) with events

	def apply(self, event: Event) -> None:
		d = event.document
		if event.doctype not in LEDGERS:
			return
		if not self.scope.covers(event.company, d.get("posting_date"), balance=event.doctype != GL):
			return
		if self.scope.covers(event.company, d.get("posting_date")):
			self.vouchers.add((event.company, event.doctype, d.get("voucher_type"), d.get("voucher_no")))
		for kpi in (self.stock, self.ledger, self.payments):
			kpi.apply(event)

	def stock_balances(self) -> dict[tuple, tuple]:
		return {key: (p["qty"], p["value"]) for key, p in self.stock.positions().items()}

	def outstanding(self) -> dict[tuple, Decimal]:
		out: dict[tuple, Decimal] = defaultdict(lambda: ZERO)
		for (company, _, *against), amount in self.payments.outstanding(in_account_currency=False).items():
			out[(company, *against)] += amount
		return dict(out)


# -- reading the topics to their end ---------------------------------------------------------


def read(
	consumer: Any,
	apply: Callable[[Event], None],
	progress: Callable[[int], Any] | None = None,
	idle_seconds: float = 30.0,
	clock: Callable[[], float] = time.monotonic,
) -> tuple[int, list[str], list[str]]:
	"""Read every message the consumer's topics hold now (an `EventConsumer`), applying each
	event the kit releases; (messages read, missing topics, problems). `progress(total)`
	makes a bar with `update(done)` and `close()`."""
	sizes, missing = consumer.ends()
	problems = [
		f"topic {t} does not exist: nothing was streamed to it (create-topics, or check the catalog)"
		for t in missing
	]
	bar = progress(sum(sizes.values())) if progress else None
	waiting = {tp for tp, size in sizes.items() if size}
	read_before, moved = 0, clock()
	while waiting:
		for event in consumer.poll(1.0):
			apply(event)
		waiting = {tp for tp in waiting if not consumer.positions.get(tp, (None, False))[1]}
		done = consumer.stats["messages"]
		if bar is not None:
			bar.update(done)
		if done != read_before:
			read_before, moved = done, clock()
		elif clock() - moved > idle_seconds:
			problems.append(f"stopped after {done:,} message(s): nothing more came from {sorted(waiting)}")
			break
	for event in consumer.flush():
		apply(event)
	if bar is not None:
		bar.close()
	return consumer.stats["messages"], missing, problems + _unreadable(consumer)


def _unreadable(consumer: Any) -> list[str]:
	"""Messages the kit could not decode (an unknown writer schema, bad bytes), with the last ones."""
	failed = consumer.stats["decode_errors"]
	if not failed:
		return []
	where = "; ".join(f"{t}[{p}]@{o}: {e}" for t, p, o, e in list(consumer.errors)[-3:])
	return [f"{failed:,} message(s) could not be decoded, their figures are missing ({where})"]


def reconcile(
	consumer: Any, db: Any, scope: Scope, topics: dict[str, str], progress: Callable | None = None
) -> Report:
	"""Compare the ledgers' figures from the stream (`topics`: ledger doctype -> topic; the
	consumer reads exactly those) with ERPNext's (module doc)."""
	report = Report()
	report.problems += [
		f"{ledger} is not in the Event Catalog (or not enabled): its figures cannot be compared"
		for ledger in LEDGERS
		if ledger not in topics
	]
	figures, missing = StreamFigures(scope), []
	if topics:
		report.messages, missing, problems = read(consumer, figures.apply, progress)
		report.problems += problems
	ledgers = [ledger for ledger, topic in topics.items() if ledger in LEDGERS and topic not in missing]
	return compare(report, figures, erpnext_figures(db, scope, ledgers))


# -- ERPNext's side: the tables its reports read ------------------------------------------

_LATEST_SLE = """
	SELECT `company`, `item_code`, `warehouse`, `qty_after_transaction`, `stock_value` FROM (
		SELECT `company`, `item_code`, `warehouse`, `qty_after_transaction`, `stock_value`,
			ROW_NUMBER() OVER (PARTITION BY `company`, `item_code`, `warehouse`
				ORDER BY `posting_datetime` DESC, `creation` DESC) AS `n`
		FROM `tabStock Ledger Entry` WHERE `is_cancelled` = 0{where}
	) `latest` WHERE `n` = 1"""


def erpnext_figures(db: Any, scope: Scope, ledgers: Iterable[str] = LEDGERS) -> dict[str, dict]:
	"""GL per account, stock per item and warehouse, outstanding per invoice, and the
	vouchers of each ledger, as ERPNext's reports compute them (module doc)."""
	where, values = scope.where()
	at, at_values = scope.where(balance=True)
	gl_sql = (
		"SELECT `company`, `account`, SUM(`debit`), SUM(`credit`) FROM `tabGL Entry` WHERE `is_cancelled` = 0"
	)
	ple_sql = (
		"SELECT `company`, `against_voucher_type`, `against_voucher_no`, SUM(`amount`) "
		"FROM `tabPayment Ledger Entry` WHERE `delinked` = 0"
	)
	out: dict[str, dict] = {"gl": {}, "stock": {}, "outstanding": {}, "vouchers": set()}
	ledgers = set(ledgers)
	if GL in ledgers:
		rows = db.sql(f"{gl_sql}{where} GROUP BY `company`, `account`", values)
		out["gl"] = {(c, a): (Decimal(dr or 0), Decimal(cr or 0)) for c, a, dr, cr in rows}
	if SLE in ledgers:
		rows = db.sql(_LATEST_SLE.format(where=at), at_values)
		out["stock"] = {(c, i, w): (q or 0.0, Decimal(v or 0)) for c, i, w, q, v in rows}
	if PLE in ledgers:
		rows = db.sql(
			f"{ple_sql}{at} GROUP BY `company`, `against_voucher_type`, `against_voucher_no`", at_values
		)
		out["outstanding"] = {(c, t, n): Decimal(a or 0) for c, t, n, a in rows}
	for ledger in ledgers:
		sql = f"SELECT DISTINCT `company`, `voucher_type`, `voucher_no` FROM `tab{ledger}` WHERE 1 = 1{where}"
		out["vouchers"].update((c, ledger, t, n) for c, t, n in db.sql(sql, values))
	return out


# -- the comparison ---------------------------------------------------------------------------


def _differs(a: Any, b: Any) -> bool:
	pairs = zip(a, b, strict=True) if isinstance(a, tuple) else ((a, b),)
	return any(abs(Decimal(str(x or 0)) - Decimal(str(y or 0))) > TOLERANCE for x, y in pairs)


def _compare(report: Report, what: str, counter: str, stream: dict, erpnext: dict, zero: Any) -> None:
	for key in sorted(set(stream) | set(erpnext), key=lambda k: tuple(str(p) for p in k)):
		ours, theirs = stream.get(key, zero), erpnext.get(key, zero)
		report.companies[key[0]][counter] += 1
		if _differs(ours, theirs):
			report.differences.append(Difference(key[0], what, key[1:], ours, theirs))
			report.companies[key[0]]["differences"] += 1


def compare(report: Report, stream: StreamFigures, erpnext: dict[str, dict]) -> Report:
	theirs = erpnext["vouchers"]
	for key in theirs | stream.vouchers:
		counts = report.companies[key[0]]
		if key in theirs and key in stream.vouchers:
			counts["vouchers_with_events"] += 1
			continue
		counts["vouchers_without_events" if key in theirs else "vouchers_only_in_stream"] += 1
		counts["differences"] += 1
		side = ("no events", "ledger rows") if key in theirs else ("events", "no ledger rows")
		report.differences.append(Difference(key[0], "voucher", key[1:], *side))
	_compare(report, "GL debit/credit", "accounts", stream.ledger.per_account(), erpnext["gl"], (ZERO, ZERO))
	_compare(report, "stock qty/value", "stock_keys", stream.stock_balances(), erpnext["stock"], (0.0, ZERO))
	_compare(report, "outstanding", "invoices", stream.outstanding(), erpnext["outstanding"], ZERO)
	report.differences.sort(key=lambda d: (d.company, d.what, tuple(str(k) for k in d.key)))
	return report


# -- Frappe glue: the site's catalog, connection and schemas; the last result -------------------

RESULT_FILE = "erpnext_streaming_reconcile.json"


def on_site(scope: Scope, stream: Any = None) -> Report:
	"""`bench streaming reconcile`: reconcile the current site, store the summary (`last_result`)."""
	import json

	import frappe
	from frappe.utils import now_datetime

	from erpnext_streaming.constants import default_topic
	from erpnext_streaming.operations import site
	from erpnext_streaming.operations.progress import Progress

	doc, config = site.settings()
	topics = {
		row.document_type: row.topic or default_topic(config.topic_prefix, row.document_type)
		for row in config.catalog
		if row.enabled and row.document_type in LEDGERS
	}
	consumer = _consumer(doc, config, topics) if topics else None
	try:
		bar = (lambda total: Progress("Reading the ledger topics", total, stream)) if stream else None
		report = reconcile(consumer, frappe.db, scope, topics, bar)
	finally:
		if consumer is not None:
			consumer.close()
	result = {"at": str(now_datetime()), "scope": {k: str(v or "") for k, v in vars(scope).items()}}
	with open(frappe.get_site_path("private", RESULT_FILE), "w") as f:
		json.dump({**result, **report.summary()}, f, indent=1)
	return report


def last_result() -> dict | None:
	"""The summary of the last `streaming reconcile` on this site (None: never run)."""
	import json

	import frappe

	try:
		with open(frappe.get_site_path("private", RESULT_FILE)) as f:
			return json.load(f)
	except FileNotFoundError:
		return None


def _consumer(doc: Any, config: Any, topics: dict[str, str]) -> Any:
	"""An `EventConsumer` of the site's cluster that knows the derived schemas of admin-added
	ledgers and, when one is configured, the schema registry."""
	from erpnext_streaming.consumer import Decoder, EventConsumer, SchemaStore
	from erpnext_streaming.delivery.framing import registry_config
	from erpnext_streaming.emitters.codec import derive_from_meta
	from erpnext_streaming.kafka_config import admin_config
	from erpnext_streaming.operations import site
	from erpnext_streaming.schemas import shipped_doctypes

	derived = [derive_from_meta(d) for d in topics if d not in shipped_doctypes()]
	registry = None
	if config.schema_registry_url:
		password = doc.get_password("schema_registry_password", raise_exception=False)
		registry = registry_config(
			config.schema_registry_url, config.schema_registry_username, password,
			config.schema_registry_ca_certificate,
		)  # fmt: skip
	conf = site.admin(doc, config)
	decoder = Decoder(SchemaStore(extra=derived), registry=registry)
	return EventConsumer(conf.pop("bootstrap.servers"), list(topics.values()), decoder=decoder, config=conf)
