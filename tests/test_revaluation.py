"""Revaluation after a stock repost: the scope a Repost Item Valuation covered, the SLEs in it,
and their `revalued` events through the capture core and outbox.

Twin: erpnext_streaming/tests/test_revaluation.py (a real repost on ERPNext)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import frappe
import pytest
from operations_support import COMPANY, FailingDatabase, configure, event_log

from erpnext_streaming import catalog
from erpnext_streaming.emitters.envelope import event_id
from erpnext_streaming.operations import jobs, revaluation
from erpnext_streaming.operations import site as ops
from erpnext_streaming.outbox.records import decode_payload
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.tests.utils import decode

pytestmark = pytest.mark.integration
SLE = "Stock Ledger Entry"
T0 = datetime(2024, 3, 1, 9, 0)


class RepostDoc(dict):
	"""A Repost Item Valuation as on_change sees it (Frappe Document: .get and attributes)."""

	def __getattr__(self, key):
		return self.get(key)


def repost(**fields) -> RepostDoc:
	return RepostDoc(
		{
			"doctype": "Repost Item Valuation",
			"name": "REPOST-ITEM-VAL-000001",
			"docstatus": 1,
			"status": "Completed",
			"based_on": "Item and Warehouse",
			"item_code": "ITEM-A",
			"warehouse": "Stores - WP",
			"posting_date": date(2024, 3, 1),
			"posting_time": timedelta(hours=10),
			"company": COMPANY,
			"voucher_type": None,
			"voucher_no": None,
			**fields,
		}
	)


def sle(
	name,
	item,
	warehouse,
	at,
	*,
	creation=None,
	cancelled=0,
	value=100.0,
	voucher="MAT-STE-0001",
	modified=None,
):
	creation = creation or at
	modified = modified or creation
	frappe.db.sql(
		"INSERT INTO `tabStock Ledger Entry` (name, creation, modified, owner, modified_by, docstatus, idx, "
		"item_code, warehouse, posting_date, posting_time, posting_datetime, voucher_type, voucher_no, "
		"actual_qty, qty_after_transaction, valuation_rate, stock_value, stock_value_difference, stock_queue, "
		"company, is_cancelled) VALUES (%s, %s, %s, 'Administrator', 'Administrator', 1, 0, %s, %s, %s, %s, %s, "
		"'Stock Entry', %s, 1, 10, %s, %s, %s, '[[10, 10.0]]', %s, %s)",
		(
			name, creation, modified, item, warehouse, at.date(), at - datetime.combine(at.date(), datetime.min.time()),
			at, voucher, value / 10, value, value, COMPANY, cancelled,
		),
	)  # fmt: skip


@pytest.fixture
def ledger(site):
	sle("SLE-before", "ITEM-A", "Stores - WP", T0)  # before the repost's start (10:00)
	sle("SLE-1", "ITEM-A", "Stores - WP", T0 + timedelta(hours=1), value=110)
	sle("SLE-cancelled", "ITEM-A", "Stores - WP", T0 + timedelta(hours=2), cancelled=1)
	# three rows at one posting datetime: ordered by creation, then name
	same = T0 + timedelta(days=1)
	sle("SLE-3b", "ITEM-A", "Stores - WP", same, creation=same + timedelta(seconds=5))
	sle("SLE-3a", "ITEM-A", "Stores - WP", same, creation=same + timedelta(seconds=5))
	sle("SLE-2", "ITEM-A", "Stores - WP", same, creation=same + timedelta(seconds=1))
	sle("SLE-other-wh", "ITEM-A", "Goods In Transit - WP", T0 + timedelta(hours=3))
	sle("SLE-B1", "ITEM-B", "Stores - WP", T0 + timedelta(days=2))
	frappe.db.commit()


def test_scope_is_each_pair_once_with_its_earliest_start():
	items = [
		{"item_code": "ITEM-B", "warehouse": "Stores - WP", "posting_date": "2024-03-05", "posting_time": "08:00:00"},
		{"item_code": "ITEM-A", "warehouse": "Stores - WP", "posting_date": "2024-03-02", "posting_time": "10:00:00"},
		# a dependent pair appended later with an earlier date (ERPNext moves it back)
		{"item_code": "ITEM-A", "warehouse": "Stores - WP", "posting_date": date(2024, 3, 1), "posting_time": timedelta(hours=9, minutes=5)},
		{"item_code": "", "warehouse": "Stores - WP", "posting_date": "2024-03-01"},
	]  # fmt: skip
	assert revaluation.scope("Transaction", None, None, None, None, items) == [
		["ITEM-A", "Stores - WP", "2024-03-01 09:05:00.000000"],
		["ITEM-B", "Stores - WP", "2024-03-05 08:00:00.000000"],
	]
	assert revaluation.scope("Item and Warehouse", "ITEM-A", "Stores - WP", "2024-03-01", "10:00:00") == [
		["ITEM-A", "Stores - WP", "2024-03-01 10:00:00.000000"]
	]
	assert revaluation.scope("Item and Warehouse", "ITEM-A", "Stores - WP", "2024-03-01", None) == [
		["ITEM-A", "Stores - WP", "2024-03-01 00:00:00.000000"]
	]


def test_a_transaction_repost_without_its_list_falls_back_to_the_vouchers_pairs(ledger):
	pairs = revaluation.voucher_pairs(frappe.db, "Stock Entry", "MAT-STE-0001")
	assert revaluation.scope("Transaction", None, None, None, None, (), pairs) == [
		["ITEM-A", "Goods In Transit - WP", "2024-03-01 12:00:00.000000"],
		["ITEM-A", "Stores - WP", "2024-03-01 09:00:00.000000"],
		["ITEM-B", "Stores - WP", "2024-03-03 09:00:00.000000"],
	]


def test_the_source_walks_each_pair_from_its_start_in_repost_order_across_chunks(ledger):
	source = revaluation.LedgerSource.of(
		[
			["ITEM-A", "Stores - WP", "2024-03-01 10:00:00.000000"],
			["ITEM-B", "Stores - WP", "2024-03-01 00:00:00"],
		]
	)
	assert source.count(frappe.db) == 5
	seen, checkpoint = [], None
	for _ in range(10):
		rows, checkpoint = source.fetch(frappe.db, checkpoint, 2)
		if not rows:
			break
		seen.append([r["name"] for r in rows])
	# not cancelled, not before the start, not another warehouse; (posting_datetime, creation, name)
	assert seen == [["SLE-1", "SLE-2"], ["SLE-3a", "SLE-3b"], ["SLE-B1"]]
	assert checkpoint == {"pair": 2, "after": None}


def test_a_completed_repost_records_one_revaluation_and_the_job_emits_revalued_events(ledger):
	configure()
	ops.on_repost_change(repost(status="In Progress"), "on_change")
	assert jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION) == []
	ops.on_repost_change(repost(), "on_change")
	ops.on_repost_change(repost(), "on_change")  # the db_sets after "Completed" fire on_change again
	frappe.db.commit()
	(job,) = jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION)
	assert job.repost_item_valuation == "REPOST-ITEM-VAL-000001" and job.company == COMPANY
	assert job.scope == [["ITEM-A", "Stores - WP", "2024-03-01 10:00:00.000000"]]

	# the repost rewrote the valuation (and modified) of its rows after our hook ran
	frappe.db.sql(
		"UPDATE `tabStock Ledger Entry` SET valuation_rate = 12.5, stock_value = 125, modified = %s "
		"WHERE name IN ('SLE-1', 'SLE-2', 'SLE-3a', 'SLE-3b')",
		(datetime(2026, 11, 24, 3, 0),),
	)
	frappe.db.commit()
	(result,) = ops.run_pending_revaluations(db=frappe.db)
	assert result.ok and result.job.emitted == 4
	rows = event_log("name, event_id, reference_name, event_type, topic, status, payload")
	assert [(r.reference_name, r.event_type, r.topic, r.status) for r in rows] == [
		(name, "revalued", "erpnext.stock-ledger-entry", "Queued")
		for name in ("SLE-1", "SLE-2", "SLE-3a", "SLE-3b")
	]
	schema = get_event_schema(SLE)
	record = decode(decode_payload(rows[0].payload), schema)
	assert record["event_type"] == "revalued" and record["document"]["valuation_rate"] == 12.5
	assert record["document"]["stock_value"] == 125 and record["voucher_no"] == "MAT-STE-0001"
	assert rows[0].event_id == event_id(SLE, "SLE-1", "revalued", datetime(2026, 11, 24, 3, 0))
	assert jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION) == []

	# the next repost of the same rows rewrites `modified` again: new ids, none repeated
	frappe.db.sql(
		"UPDATE `tabStock Ledger Entry` SET modified = %s WHERE name IN ('SLE-1', 'SLE-2')",
		(datetime(2026, 11, 25, 3, 0),),
	)
	ops.on_repost_change(repost(), "on_change")
	frappe.db.commit()
	(again,) = ops.run_pending_revaluations(db=frappe.db)
	assert (again.job.emitted, again.job.skipped) == (2, 2)
	ids = [r.event_id for r in event_log()]
	assert len(ids) == 6 == len(set(ids))


def test_a_long_revaluation_pauses_resumes_and_survives_an_interruption(ledger):
	configure()
	for i in range(30):
		sle(f"SLE-X{i:02d}", "ITEM-X", "Stores - WP", T0 + timedelta(minutes=i))
	frappe.db.commit()
	ops.on_repost_change(repost(item_code="ITEM-X", posting_time="09:00:00"), "on_change")
	frappe.db.commit()
	(job,) = jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION)

	# interrupted during its 3rd chunk (commits: 1 Running, 1 + k chunk k)
	interrupted = FailingDatabase(frappe.db, fail_at=1 + 3, error=KeyboardInterrupt())
	route = ops.revalued_route()
	source = revaluation.LedgerSource.of(job.scope)
	result = jobs.run(interrupted, job, source, route, ops._codec(), datetime.now, chunk_size=4)
	assert result.outcome == jobs.Outcome.INTERRUPTED and jobs.load(frappe.db, job.name).processed == 8
	assert len(event_log()) == 8

	# the job pauses itself between chunks when its time is up, and continues later
	ticks = iter(range(100))
	(paused,) = ops.run_pending_revaluations(db=frappe.db, max_seconds=1, clock=lambda: next(ticks))
	assert paused.outcome == jobs.Outcome.PAUSED and paused.job.status == "Queued"
	(done,) = ops.run_pending_revaluations(db=frappe.db)
	assert done.ok
	rows = event_log()
	assert sorted(r.reference_name for r in rows) == [f"SLE-X{i:02d}" for i in range(30)]
	assert len({r.event_id for r in rows}) == 30


def test_nothing_is_recorded_when_stock_ledger_entries_do_not_stream(ledger):
	rows = [r for r in catalog.default_catalog_rows() if r["document_type"] != SLE]
	configure(event_catalog=rows)
	ops.on_repost_change(repost(), "on_change")
	configure(enabled=0)
	ops.on_repost_change(repost(), "on_change")
	frappe.db.commit()
	assert jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION) == []
	assert ops.run_pending_revaluations(db=frappe.db) == []


def test_the_hook_never_raises_into_the_repost(site):
	configure()
	broken = repost(based_on="Item and Warehouse", posting_date="not a date")
	ops.on_repost_change(broken, "on_change")  # logged, not raised
	assert frappe.local.error_log and "revaluation" in frappe.local.error_log[-1].method
	assert jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION) == []
