"""Reference KPIs on the kit: from a generated stream (sandbox/workload.py: invoices, stock
moves, payments, cancellations with reversal ledger rows, revaluations, work orders, job
cards) built with the real builders and codec, framed as the drainer frames them,
decoded by the kit, shuffled, duplicated and late, the KPIs equal the values computed
directly from the generated documents."""

from __future__ import annotations

import base64
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_bundle_format import message_of

from erpnext_streaming.constants import Encoding
from erpnext_streaming.consumer import Decoder, Event, Reorderer
from erpnext_streaming.consumer.alerts import ThresholdAlerts
from erpnext_streaming.consumer.kpis import (
	CashExposure,
	JobCardTimes,
	PaymentLedger,
	RevenueVelocity,
	StockPosition,
	WorkOrderBoard,
)
from erpnext_streaming.emitters.codec import AvroCodec
from sandbox import pipeline
from sandbox.workload import Workload

UTC = timezone.utc


def d(value) -> Decimal:
	return Decimal(str(value))


def generate(seed: int, transactions: int, encoding: str = Encoding.SINGLE_OBJECT):
	"""The workload, and every event as the kit decodes it from the framed message."""
	workload = Workload(seed=seed)
	routes = pipeline.catalog(encoding)
	codec = AvroCodec("sandbox.local")
	decoder = Decoder()
	sequences: Counter[str] = Counter()
	events: list[Event] = []
	for _ in range(transactions):
		tx = workload.next()
		buffer = pipeline.capture_transaction(tx, routes, codec, workload._last_modified)
		for record in pipeline.records_without_database(buffer, codec):
			sequences[record.company] += 1
			row = {
				"name": len(events) + 1, "creation": datetime(2026, 11, 23), **vars_of(record),
				"company_sequence": sequences[record.company],
				"payload": base64.b64encode(record.payload).decode(),
			}  # fmt: skip
			message = message_of(row, "sandbox.local", UTC)
			events.append(decoder.decode(message.value, message.headers, topic=record.topic))
	return workload, events


def vars_of(record) -> dict:
	return {k: getattr(record, k) for k in record.__slots__ if k != "payload"}


def deliver(events: list[Event], rng: random.Random) -> list[Event]:
	"""At-least-once delivery: neighbours swapped, some events repeated, a few held back long."""
	out = list(events)
	for i in range(len(out) - 1):
		if rng.random() < 0.3:
			out[i], out[i + 1] = out[i + 1], out[i]
	for event in rng.sample(events, len(events) // 10):
		out.insert(rng.randrange(len(out) + 1), event)
	for event in rng.sample(events, len(events) // 50):
		out.remove(event)
		out.append(event)  # very late: after everything else
	return out


def through_the_kit(events: list[Event], rng: random.Random) -> list[Event]:
	orderer = Reorderer(lateness=timedelta(minutes=2), first_sequence=1)
	released = [out for e in deliver(events, rng) for out in orderer.push(e)] + orderer.flush()
	assert orderer.stats["duplicates"] > 0 and len(released) == len(events)
	return released


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), shuffle=st.integers(0, 10_000))
def test_kpis_equal_the_values_computed_from_the_documents(seed, shuffle):
	workload, events = generate(seed, 260)
	released = through_the_kit(events, random.Random(shuffle))
	revenue, stock, cash, payments, jobs, board = (
		RevenueVelocity(),
		StockPosition(),
		CashExposure(),
		PaymentLedger(),
		JobCardTimes(),
		WorkOrderBoard(),
	)
	for event in released:
		for kpi in (revenue, stock, cash, payments, jobs, board):
			kpi.apply(event)

	doctypes = Counter(e.doctype for e in events)
	assert {
		"Sales Invoice",
		"Payment Entry",
		"Payment Ledger Entry",
		"GL Entry",
		"Stock Ledger Entry",
	} <= set(doctypes)
	cancelled = [i for i in workload.invoices.values() if i["docstatus"] == 2]
	assert cancelled and any(s["is_cancelled"] for s in workload.sles), "the stream has cancellations"

	# revenue: submitted invoices net of cancelled ones, per posting minute
	for company in workload.companies:
		standing = [i for i in workload.invoices.values() if i["company"] == company and i["docstatus"] == 1]
		assert revenue.totals(company) == (
			len(standing),
			sum((d(i["base_grand_total"]) for i in standing), Decimal(0)),
		)
		minutes = defaultdict(lambda: [0, Decimal(0)])
		for invoice in standing:
			moment = datetime.combine(invoice["posting_date"], invoice["posting_time"], UTC).replace(
				second=0, microsecond=0
			)
			minutes[moment][0] += 1
			minutes[moment][1] += d(invoice["base_grand_total"])
		assert revenue.per_minute(company) == {m: tuple(v) for m, v in sorted(minutes.items())}

	# stock: quantities, values and movement over the rows ERPNext's Stock Balance counts (is_cancelled
	# = 0 in the database: the stream's originals of a cancelled voucher still say false); a Stock
	# Reconciliation row sets the quantity (a later cancel of an earlier sale does not change it)
	expected = defaultdict(lambda: {"qty": 0.0, "value": Decimal(0), "in": 0.0, "out": 0.0})
	for sle in sorted(
		(s for s in workload.sles if not s["is_cancelled"]), key=lambda s: s["posting_datetime"]
	):
		position = expected[(sle["company"], sle["item_code"], sle["warehouse"])]
		absolute = sle["voucher_type"] == "Stock Reconciliation" and not sle.get("batch_no")
		position["qty"] = sle["qty_after_transaction"] if absolute else position["qty"] + sle["actual_qty"]
		position["value"] += d(sle["stock_value_difference"])
		position["in" if sle["actual_qty"] > 0 else "out"] += abs(sle["actual_qty"])
	assert stock.positions() == dict(expected)
	for (company, item, warehouse), (_, value) in workload.stock.items():  # the generator's own books
		assert stock.positions()[(company, item, warehouse)]["value"] == d(value)

	# cash and receivables from the general ledger
	balances = Counter()
	for gl in (g for g in workload.gles if not g["is_cancelled"]):
		balances[(gl["company"], cash.account_type(gl))] += d(gl["debit"]) - d(gl["credit"])
	assert cash.balances() == {k: v for k, v in balances.items()}
	for company in workload.companies:
		receivable = sum(
			(
				d(i["outstanding_amount"])
				for i in workload.invoices.values()
				if i["company"] == company and i["docstatus"] == 1
			),
			Decimal(0),
		)
		assert cash.exposure(company)["receivable"] == receivable, "receivable = what the invoices still owe"
		assert payments.receivable(company) == receivable, "the same from the Payment Ledger events"
	assert {k: v for k, v in payments.outstanding().items() if v} == {
		(i["company"], "Receivable", "Sales Invoice", n): d(i["outstanding_amount"])
		for n, i in workload.invoices.items()
		if i["outstanding_amount"]
	}

	# job cards: cycle and idle time per work order + operation, from the final documents
	want = {}
	for card in workload.job_cards.values():
		if card.get("status") == "Completed":
			cycle = (card["actual_end_date"] - card["actual_start_date"]).total_seconds() / 60
			working = sum(log["time_in_mins"] for log in card["time_logs"])
			want[(card["work_order"], card["operation"])] = (1, cycle, working, max(cycle - working, 0.0))
	got = {k: (v["job_cards"], v["cycle"], v["working"], v["idle"]) for k, v in jobs.per_operation().items()}
	assert got.keys() == want.keys() and want
	for key, values in want.items():
		assert got[key] == pytest.approx(values)

	for company in workload.companies:
		still_open = {
			n
			for n, o in workload.work_orders.items()
			if o["company"] == company and o["status"] != "Completed"
		}
		assert {o["name"] for o in board.open_orders(company)} == still_open


def test_revenue_velocity_over_a_window():
	revenue = RevenueVelocity(window=timedelta(minutes=2))
	t = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
	for i, (minute, value, kind) in enumerate(
		[(0, 100, "submitted"), (1, 50, "submitted"), (1, 25, "submitted"), (2, 10, "submitted")]
	):
		revenue.apply(invoice_event(f"SINV-{i}", t + timedelta(minutes=minute), value, kind))
	revenue.apply(invoice_event("SINV-2", t + timedelta(minutes=1), 25, "cancelled"))
	revenue.apply(
		invoice_event("SINV-2", t + timedelta(minutes=1), 25, "submitted")
	)  # late copy of the submit
	assert revenue.velocity("A", until=t + timedelta(minutes=2)) == (1.0, Decimal(30))  # minutes 1 and 2
	assert revenue.totals("A") == (3, Decimal(160))


def test_a_revaluation_of_a_ledger_row_replaces_its_value_and_an_older_copy_changes_nothing():
	stock = StockPosition()
	first = sle_event(modified=datetime(2026, 11, 23, 9, 0), value="100.00")
	revalued = sle_event(modified=datetime(2026, 11, 23, 11, 0), value="112.50")
	for event in (first, revalued, first):  # the older copy arrives again, late
		stock.apply(event)
	assert stock.positions()[("A", "BOLT", "Stores - A")] == {
		"qty": 5.0,
		"value": Decimal("112.50"),
		"in": 5.0,
		"out": 0.0,
	}


def test_a_reorder_alert_fires_once_per_crossing_even_with_duplicates():
	workload, events = generate(11, 300, Encoding.SCHEMALESS)
	level = 25.0
	stock, alerts = StockPosition(), ThresholdAlerts(lambda key: level, hysteresis=0.0)
	for event in events:  # in order, every event twice
		for copy in (event, event):
			key = stock.apply(copy)
			if key:
				alerts.observe(key, stock.on_hand(key), copy.event_time)
	expected = Counter()
	running, below = defaultdict(float), set()
	for sle in workload.sles:
		key = (sle["company"], sle["item_code"], sle["warehouse"])
		running[key] += sle["actual_qty"]
		if running[key] < level and key not in below:
			below.add(key)
			expected[key] += 1
		elif running[key] >= level:
			below.discard(key)
	assert expected, "the workload crosses the reorder level"
	assert Counter(a.key for a in alerts.fired) == expected


def test_hysteresis_keeps_a_wobble_around_the_threshold_quiet():
	alerts = ThresholdAlerts({"k": 10.0}, hysteresis=5.0)
	fired = [alerts.observe("k", v) for v in (12, 9, 11, 9, 14, 16, 8)]
	assert [a.crossing for a in fired if a] == [1, 2]
	above = ThresholdAlerts({"k": 10.0}, below=False)
	assert [bool(above.observe("k", v)) for v in (5, 11, 12, 9, 11)] == [False, True, False, False, True]


# -- cancellations, as ERPNext writes them (issue 17 item 7) ---------------------------------------


def ledger(doctype: str, sequence: int, name: str, voucher: str, **document) -> Event:
	"""A `posted` ledger row event at its place in the company's order."""
	moment = datetime(2026, 11, 23, 9, 0, tzinfo=UTC) + timedelta(seconds=sequence)
	voucher_type, voucher_no = voucher.split(":")
	record = {
		"event_id": f"{doctype}/{name}", "event_type": "posted", "doctype": doctype, "name": name,
		"company": "A", "event_time": moment, "modified": moment,
		"document": {"voucher_type": voucher_type, "voucher_no": voucher_no, **document},
	}  # fmt: skip
	return Event.from_record(record, sequence=sequence)


def in_any_order(events: list[Event], kpi, seed: int = 7):
	"""Every order, duplicates included, gives the same figures."""
	shuffled = events + events[:3]
	random.Random(seed).shuffle(shuffled)
	for event in shuffled:
		kpi.apply(event)
	return kpi


def sle(sequence, name, voucher, qty, value, cancelled=False, detail="d1", after=None):
	moment = datetime(2026, 11, 23, 9, 0) + timedelta(seconds=sequence)
	return ledger("Stock Ledger Entry", sequence, name, voucher, voucher_detail_no=detail, item_code="BOLT",
		warehouse="Stores - A", actual_qty=qty, stock_value_difference=d(value), is_cancelled=cancelled,
		qty_after_transaction=after, posting_datetime=moment)  # fmt: skip


def test_a_stock_reconciliation_sets_the_quantity_as_stock_balance_does():
	"""A Stock Reconciliation row of a non-batch item has actual_qty 0 and sets
	qty_after_transaction: Stock Balance takes that, plus the moves after it
	(erpnext/stock/report/stock_balance/stock_balance.py prepare_item_warehouse_map)."""
	events = [
		sle(1, "s1", "Purchase Receipt:PR-1", 5.0, "50", after=5.0),
		sle(2, "s2", "Stock Reconciliation:SR-1", 0.0, "30", after=8.0),
		sle(3, "s3", "Sales Invoice:SINV-1", -1.0, "-10", after=7.0),
	]
	stock = in_any_order(events, StockPosition())
	assert stock.positions()[("A", "BOLT", "Stores - A")]["qty"] == 7.0


def test_stock_value_leaves_out_a_cancelled_voucher_whose_reversal_carries_no_value():
	"""ERPNext's reversal row of a cancel has actual_qty negated but stock_value_difference 0
	(update_entries_after skips is_cancelled rows), and the original stays is_cancelled = false in
	the stream; Stock Balance leaves both out. A Landed Cost Voucher's re-posted rows stand."""
	events = [
		sle(1, "s1", "Purchase Receipt:PR-1", 5.0, "50", after=5.0),
		sle(2, "s2", "Sales Invoice:SINV-1", -1.0, "-10", after=4.0),
		sle(3, "s3", "Sales Invoice:SINV-1", 1.0, "0", cancelled=True),  # the cancel's reversal
		sle(4, "s4", "Purchase Receipt:PR-2", 2.0, "20", after=6.0),
		sle(5, "s5", "Purchase Receipt:PR-2", -2.0, "0", cancelled=True),  # landed cost: cancel ...
		sle(6, "s6", "Purchase Receipt:PR-2", 2.0, "24", after=7.0),  # ... and re-post, same voucher and line
	]
	stock = in_any_order(events, StockPosition())
	assert stock.positions() == {
		("A", "BOLT", "Stores - A"): {"qty": 7.0, "value": d("74"), "in": 7.0, "out": 0.0}
	}


def gle(sequence, name, voucher, account, debit, credit, cancelled=False):
	return ledger("GL Entry", sequence, name, voucher, account=account, debit=d(debit), credit=d(credit),
		is_cancelled=cancelled, voucher_detail_no=None, party=None, cost_center="Main - A")  # fmt: skip


def test_gl_debit_and_credit_per_account_leave_out_a_cancelled_voucher_as_the_general_ledger_does():
	events = [
		gle(1, "g1", "Sales Invoice:SINV-1", "Debtors - A", "100", "0"),
		gle(2, "g2", "Sales Invoice:SINV-1", "Sales - A", "0", "100"),
		gle(3, "g3", "Sales Invoice:SINV-2", "Debtors - A", "40", "0"),
		gle(4, "g4", "Sales Invoice:SINV-2", "Sales - A", "0", "40"),
		gle(5, "g5", "Sales Invoice:SINV-1", "Debtors - A", "0", "100", cancelled=True),  # reversal rows
		gle(6, "g6", "Sales Invoice:SINV-1", "Sales - A", "100", "0", cancelled=True),
	]
	cash = in_any_order(events, CashExposure({"Debtors - A": "Receivable"}))
	assert cash.per_account() == {
		("A", "Debtors - A"): (d("40"), d("0")),
		("A", "Sales - A"): (d("0"), d("40")),
	}
	assert cash.exposure("A")["receivable"] == d("40")


def test_journal_entry_lines_that_look_alike_are_rows_of_their_own():
	"""A Journal Entry's GL rows have no voucher_detail_no: 3 equal lines are 3 rows (their names)."""
	events = [gle(n, f"g{n}", "Journal Entry:JV-1", "Cash - A", "5", "0") for n in (1, 2, 3)]
	cash = in_any_order(events, CashExposure())
	assert cash.per_account() == {("A", "Cash - A"): (d("15"), d("0"))}


def ple(sequence, name, voucher, amount, delinked=False, against="Sales Invoice:SINV-1"):
	against_type, against_no = against.split(":")
	return ledger("Payment Ledger Entry", sequence, name, voucher, account="Debtors - A", party_type="Customer",
		party="C1", account_type="Receivable", against_voucher_type=against_type, against_voucher_no=against_no,
		amount=d(amount), amount_in_account_currency=d(amount), delinked=delinked)  # fmt: skip


def test_receivables_from_payment_ledger_events_follow_erpnexts_delinking():
	"""Invoice 100, payment 30, second payment 30, cancel of the second, credit note 10: outstanding
	60, as ERPNext's invoice and Accounts Receivable say; the cancelled payment's original row
	stays delinked = false in the stream (delink_original_entry is a bulk UPDATE)."""
	events = [
		ple(1, "p1", "Sales Invoice:SINV-1", "100"),
		ple(2, "p2", "Payment Entry:PE-1", "-30"),
		ple(3, "p3", "Payment Entry:PE-2", "-30"),
		ple(4, "p4", "Payment Entry:PE-2", "30", delinked=True),  # the cancel of PE-2
		ple(5, "p5", "Sales Invoice:CN-1", "-10"),  # credit note against SINV-1
		ple(6, "p6", "Sales Invoice:SINV-2", "25", against="Sales Invoice:SINV-2"),
	]
	payments = in_any_order(events, PaymentLedger())
	assert payments.outstanding() == {
		("A", "Receivable", "Sales Invoice", "SINV-1"): d("60"),
		("A", "Receivable", "Sales Invoice", "SINV-2"): d("25"),
	}
	assert payments.receivable("A") == d("85")


# -- helpers -----------------------------------------------------------------------------------


def invoice_event(name: str, moment: datetime, value: float, kind: str) -> Event:
	record = {
		"event_id": f"{name}/{kind}", "event_type": kind, "doctype": "Sales Invoice", "name": name,
		"company": "A", "event_time": moment, "modified": moment,
		"document": {"base_grand_total": d(value), "docstatus": 2 if kind == "cancelled" else 1},
	}  # fmt: skip
	return Event.from_record(record)


def sle_event(modified: datetime, value: str) -> Event:
	record = {
		"event_id": f"sle/{modified}", "event_type": "posted", "doctype": "Stock Ledger Entry", "name": "x1",
		"company": "A", "event_time": modified.replace(tzinfo=UTC), "modified": modified.replace(tzinfo=UTC),
		"document": {
			"voucher_type": "Purchase Receipt", "voucher_no": "PR-1", "voucher_detail_no": "pri-1",
			"item_code": "BOLT", "warehouse": "Stores - A", "actual_qty": 5.0, "qty_after_transaction": 5.0,
			"stock_value_difference": Decimal(value), "is_cancelled": False,
		},
	}  # fmt: skip
	return Event.from_record(record)
