"""`bench streaming reconcile` against real Kafka and MariaDB: ledger rows written to the
tables ERPNext's reports read, the same rows as events on the topics (encoded with the
shipped GL Entry, Stock Ledger Entry and Payment Ledger Entry schemas), and the command run on the stand-in site. Twin:
erpnext_streaming/tests/test_reconcile.py.

The rows follow ERPNext's own writes: a cancelled payment sets `is_cancelled = 1` on its
GL rows and posts swapped reversal rows (general_ledger.py `make_reverse_gl_entries`),
delinks its Payment Ledger rows and posts negated, delinked ones (utils.py
`create_payment_ledger_entry`); a Stock Reconciliation row has `actual_qty` 0 and sets
`qty_after_transaction` (stock_reconciliation.py `get_sle_for_items`).
"""

from __future__ import annotations

import io
import json
import uuid
from collections import Counter
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal

import fastavro
import frappe
import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from delivery_support import create_topics
from frappe import standin
from harness import schema

from erpnext_streaming import commands
from erpnext_streaming.constants import SETTINGS_DOCTYPE
from erpnext_streaming.operations import reconcile
from erpnext_streaming.schemas import get_event_schema

pytestmark = pytest.mark.integration

PLE_FIELDS = (
	("company", "Link"), ("account", "Link"), ("party_type", "Link"), ("party", "Dynamic Link"),
	("voucher_type", "Link"), ("voucher_no", "Dynamic Link"), ("against_voucher_type", "Link"),
	("against_voucher_no", "Dynamic Link"), ("amount", "Currency"),
	("amount_in_account_currency", "Currency"), ("delinked", "Check"), ("posting_date", "Date"),
)  # fmt: skip
PLE_DOCTYPE = {
	"name": "Payment Ledger Entry",
	"fields": [{"fieldname": f, "fieldtype": t} for f, t in PLE_FIELDS],
	"engine": "InnoDB",
}
SCHEMAS = {
	"GL Entry": get_event_schema("GL Entry"),
	"Stock Ledger Entry": get_event_schema("Stock Ledger Entry"),
	"Payment Ledger Entry": get_event_schema("Payment Ledger Entry"),
}
ACME, GLOBEX = "Acme Corp", "Globex Ltd"
DAY = date(2026, 11, 2)


class Books:
	"""Ledger rows written to MariaDB as ERPNext writes them, and each row's event."""

	def __init__(self):
		self.events: list[tuple[str, str, bytes, list]] = []  # (doctype, company, value, headers)
		self.sequences: Counter[str] = Counter()
		self.clock = datetime(2026, 11, 2, 9, 0)
		self.values: Counter[tuple] = Counter()  # stock_value per (company, item, warehouse)

	def _row(self, doctype: str, row: dict, stream: bool = True, **differs) -> None:
		self.clock += timedelta(seconds=1)
		row = {"name": uuid.uuid4().hex[:10], "creation": self.clock, "modified": self.clock, **row}
		# the harness's tables hold a subset of ERPNext's columns; the event carries them all
		stored = {c for (c, *_) in frappe.db.sql(f"SHOW COLUMNS FROM `tab{doctype}`")}
		kept = {c: v for c, v in row.items() if c in stored}
		columns = ", ".join(f"`{c}`" for c in kept)
		frappe.db.sql(
			f"INSERT INTO `tab{doctype}` ({columns}) VALUES ({', '.join(['%s'] * len(kept))})",
			list(kept.values()),
		)
		if stream:
			self.events.append(self._event(doctype, {**row, **differs}))

	def _event(self, doctype: str, row: dict) -> tuple:
		schema, company = SCHEMAS[doctype], row["company"]
		document = dict.fromkeys(f["name"] for f in schema.document_schema["fields"])
		document.update({k: v for k, v in row.items() if k in document}, docstatus=1)
		for flag in ("is_cancelled", "delinked"):
			if flag in document:
				document[flag] = bool(row.get(flag))
		record = {
			"event_id": str(uuid.uuid4()), "event_type": "posted", "doctype": doctype, "name": row["name"],
			"company": company, "site": "test.local", "docstatus": 1, "event_time": self.clock,
			"emitted_at": self.clock, "modified": self.clock, "schema_name": schema.name,
			"schema_version": schema.version, "voucher_type": row.get("voucher_type"),
			"voucher_no": row.get("voucher_no"), "voucher_detail_no": None, "document": document,
		}  # fmt: skip
		out = io.BytesIO()
		fastavro.schemaless_writer(out, schema.parsed, record)
		self.sequences[company] += 1
		headers = [
			("content-type", b"application/avro"), ("schema_fingerprint", schema.fingerprint.encode()),
			("es_company_sequence", str(self.sequences[company]).encode()),
		]  # fmt: skip
		return doctype, company, out.getvalue(), headers

	def gl(self, company, voucher, account, debit=0, credit=0, stream=True, **differs):
		row = {
			"company": company, "voucher_type": voucher[0], "voucher_no": voucher[1], "account": account,
			"debit": Decimal(debit), "credit": Decimal(credit), "posting_date": DAY, "is_cancelled": 0,
		}  # fmt: skip
		self._row("GL Entry", row, stream, **differs)

	def sle(self, company, voucher, item, warehouse, qty, after, value, stream=True):
		moment = datetime.combine(DAY, datetime.min.time()) + timedelta(hours=len(self.events))
		row = {
			"company": company, "voucher_type": voucher[0], "voucher_no": voucher[1], "item_code": item,
			"warehouse": warehouse, "actual_qty": qty, "qty_after_transaction": after,
			"stock_value": Decimal(value), "posting_date": DAY, "posting_datetime": moment, "is_cancelled": 0,
			"stock_value_difference": Decimal(value) - self.values[(company, item, warehouse)],
		}  # fmt: skip
		self.values[(company, item, warehouse)] = Decimal(value)
		self._row("Stock Ledger Entry", row, stream)

	def ple(self, company, voucher, against, value, stream=True, **differs):
		row = {
			"company": company, "voucher_type": voucher[0], "voucher_no": voucher[1], "account": "Debtors",
			"party_type": "Customer", "party": "Alice", "against_voucher_type": against[0],
			"against_voucher_no": against[1], "amount": Decimal(value),
			"amount_in_account_currency": Decimal(value), "delinked": 0, "posting_date": DAY,
		}  # fmt: skip
		self._row("Payment Ledger Entry", row, stream, **differs)

	def cancel_payment(self, company, voucher, against, amount):
		"""ERPNext's cancel of a payment: swapped reversal rows inserted with submit (events),
		and every row of the voucher flagged by bulk UPDATEs (no event)."""
		self.gl(company, voucher, "Debtors", debit=amount, is_cancelled=True)
		self.gl(company, voucher, "Cash", credit=amount, is_cancelled=True)
		self.ple(company, voucher, against, amount, delinked=True)
		for table, flag in (("GL Entry", "is_cancelled"), ("Payment Ledger Entry", "delinked")):
			frappe.db.sql(f"UPDATE `tab{table}` SET `{flag}` = 1 WHERE `voucher_no` = %s", (voucher[1],))


def standard_books(books: Books, drop: str = "") -> None:
	"""Receipt, invoice, two payments (one cancelled), a stock reconciliation, and a journal
	of a second company. `drop`: the event left out of the stream, or the amount made wrong."""
	pr, sinv, pe1, pe2 = ("Purchase Receipt", "PR-1"), ("Sales Invoice", "SINV-1"), ("Payment Entry", "PE-1"), ("Payment Entry", "PE-2")  # fmt: skip
	books.sle(ACME, pr, "BOLT", "Stores - A", 20, 20, 200)
	books.gl(ACME, pr, "Stock In Hand", debit=200)
	books.gl(ACME, pr, "Stock Received But Not Billed", credit=200)
	books.sle(ACME, sinv, "BOLT", "Stores - A", -5, 15, 150)
	books.gl(ACME, sinv, "Debtors", debit=100)
	books.gl(ACME, sinv, "Sales", credit=100, stream=drop != "gl row")
	books.ple(ACME, sinv, sinv, 100, **({"amount": Decimal(90)} if drop == "amount" else {}))
	for payment in (pe1, pe2):
		books.gl(ACME, payment, "Cash", debit=30)
		books.gl(ACME, payment, "Debtors", credit=30)
		books.ple(ACME, payment, sinv, -30)
	books.cancel_payment(ACME, pe2, sinv, 30)
	books.sle(ACME, ("Stock Reconciliation", "SR-1"), "BOLT", "Stores - A", 0, 12, 120)
	journal = ("Journal Entry", "JV-1")
	books.gl(GLOBEX, journal, "Cash - G", debit=75, stream=drop != "voucher")
	books.gl(GLOBEX, journal, "Capital - G", credit=75, stream=drop != "voucher")
	frappe.db.commit()  # the ledger and its stream are in place before reconcile reads them


@pytest.fixture
def books(site):
	"""The ledgers' tables emptied; Payment Ledger Entry's table and meta made when the
	harness has none (the meta derives its event schema when none is shipped)."""
	if not frappe.db.sql("SHOW TABLES LIKE 'tabPayment Ledger Entry'"):
		for statement in schema.create_table_sql(PLE_DOCTYPE):
			frappe.db.sql(statement)
	frappe.db.sql("DELETE FROM `tabPayment Ledger Entry`")
	try:
		frappe.get_meta("Payment Ledger Entry")
	except frappe.DoesNotExistError:
		standin.register_doctype(PLE_DOCTYPE)
	return Books()


@pytest.fixture
def bench(site, kafka_bootstrap, monkeypatch):
	"""`bench streaming reconcile` on the stand-in site, with the ledger topics of this test."""

	@contextmanager
	def connected(ctx):
		yield site

	monkeypatch.setattr(commands, "connect", connected)
	prefix = f"erpnext.test-{uuid.uuid4().hex[:8]}"
	topics = {d: f"{prefix}.{d.lower().replace(' ', '-')}" for d in SCHEMAS}
	catalog = [{"document_type": d, "enabled": 1, "on_submit": 1, "topic": t} for d, t in topics.items()]
	standin.set_single(
		SETTINGS_DOCTYPE, {"enabled": 1, "bootstrap_servers": kafka_bootstrap, "event_catalog": catalog}
	)

	def run(*args: str):
		return CliRunner().invoke(commands.streaming, ["reconcile", *args], obj={"sites": [site]})

	def produce(events, made=tuple(SCHEMAS)):
		create_topics(kafka_bootstrap, *((topics[d], 3) for d in made))
		producer = Producer({"bootstrap.servers": kafka_bootstrap})
		for doctype, company, value, headers in events:
			if doctype not in made:
				continue  # the broker would create the topic
			producer.produce(topics[doctype], value, company.encode(), headers=headers)
		assert producer.flush(30) == 0

	run.produce, run.topics = produce, topics
	return run


def test_a_stream_that_equals_the_ledger_has_no_differences(books, bench):
	standard_books(books)
	bench.produce(books.events + books.events[3:6])  # at least once: three events twice
	result = bench("--quiet")
	assert result.exit_code == 0, result.output
	assert f"Read {len(books.events) + 3:,} message(s)" in result.output
	assert (
		f"{ACME}: 10 voucher(s) with events, 0 without, 0 only in the stream; compared 5 account(s), "
		"1 item/warehouse(s), 1 invoice(s): 0 difference(s)"
	) in result.output
	assert f"{GLOBEX}: 1 voucher(s) with events, 0 without" in result.output
	assert result.output.rstrip().endswith("The stream equals the ledger")
	stored = json.load(open(frappe.get_site_path("private", reconcile.RESULT_FILE)))
	assert stored["ok"] and stored["differences"] == 0 and stored["messages"] == len(books.events) + 3
	assert reconcile.last_result() == stored

	result = bench("--quiet", "--from-date", "2026-11-03")  # GL and vouchers from a day after; balances stay
	assert result.exit_code == 0, result.output
	assert (
		f"{ACME}: 0 voucher(s) with events, 0 without, 0 only in the stream; compared 0 account(s), "
		in result.output
	)
	assert "1 item/warehouse(s), 1 invoice(s): 0 difference(s)" in result.output


def test_a_missing_event_and_a_wrong_amount_are_differences(books, bench):
	standard_books(books, drop="gl row")
	bench.produce(books.events)
	result = bench("--quiet", "--company", ACME)
	assert result.exit_code == 1, result.output
	assert f"  {ACME}: GL debit/credit Sales: stream 0 / 0, ERPNext 0 / 100" in result.output
	assert GLOBEX not in result.output
	assert reconcile.last_result()["differences"] == 1


def test_a_voucher_without_events_and_events_without_a_voucher_are_differences(books, bench):
	standard_books(books, drop="voucher")
	ghost = {"name": "gl-ghost", "company": ACME, "voucher_type": "Sales Invoice", "voucher_no": "SINV-GHOST"}
	ghost.update(account="Sales", debit=Decimal(0), credit=Decimal(7), posting_date=DAY, is_cancelled=0)
	bench.produce([*books.events, books._event("GL Entry", ghost)])  # rolled back, yet streamed
	result = bench("--quiet", "--to-date", "2026-11-30")
	assert result.exit_code == 1, result.output
	assert f"{GLOBEX}: 0 voucher(s) with events, 1 without" in result.output
	assert (
		f"  {GLOBEX}: voucher GL Entry / Journal Entry / JV-1: stream no events, ERPNext ledger rows"
		in result.output
	)
	assert f"  {GLOBEX}: GL debit/credit Cash - G: stream 0 / 0, ERPNext 75 / 0" in result.output
	assert f"{ACME}: 10 voucher(s) with events, 0 without, 1 only in the stream" in result.output
	assert (
		f"  {ACME}: voucher GL Entry / Sales Invoice / SINV-GHOST: stream events, ERPNext no ledger rows"
		in result.output
	)
	assert f"  {ACME}: GL debit/credit Sales: stream 0 / 107, ERPNext 0 / 100" in result.output


def test_a_wrong_outstanding_amount_is_a_difference(books, bench):
	standard_books(books, drop="amount")
	bench.produce(books.events)
	result = bench("--quiet")
	assert result.exit_code == 1, result.output
	assert (f"  {ACME}: outstanding Sales Invoice / SINV-1: stream 60, ERPNext 70") in result.output


def test_a_missing_topic_and_an_unknown_schema_are_said_clearly(books, bench):
	standard_books(books)
	unknown = ("GL Entry", ACME, b"\x48not an event", [("schema_fingerprint", b"0000000000000000")])
	bench.produce([*books.events, unknown], made=("GL Entry", "Stock Ledger Entry"))
	result = bench("--quiet")
	assert result.exit_code == 1, result.output
	ple_topic = bench.topics["Payment Ledger Entry"]
	assert f"Problem: topic {ple_topic} does not exist: nothing was streamed to it" in result.output
	assert "Problem: 1 message(s) could not be decoded, their figures are missing" in result.output
	assert "unknown writer schema (fingerprint 0000000000000000" in result.output
	assert "outstanding" not in result.output  # not compared without its topic
	assert result.output.rstrip().endswith("The stream differs")
