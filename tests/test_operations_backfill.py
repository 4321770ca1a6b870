"""Backfill: historical submitted documents through the real capture core, codec and outbox,
in chunks, resumable from a checkpoint, with a progress bar; no event id twice.

Twin: erpnext_streaming/tests/test_operations.py (TestBackfill)."""

from __future__ import annotations

import io
import re
import uuid
from datetime import date, datetime, timedelta

import frappe
import pytest
from operations_support import COMPANY, OTHER, FailingDatabase, configure, event_log, insert_invoices

from erpnext_streaming.emitters.envelope import event_id
from erpnext_streaming.operations import backfill, jobs
from erpnext_streaming.operations import site as ops
from erpnext_streaming.operations.progress import Progress
from erpnext_streaming.outbox.records import decode_payload
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.tests.utils import decode

pytestmark = pytest.mark.integration
SI = "Sales Invoice"


def decoded(rows) -> list[dict]:
	schema = get_event_schema(SI)
	payloads = frappe.db.sql(
		"SELECT name, payload FROM `tabStreaming Event Log` WHERE name IN %s", [tuple(r.name for r in rows)]
	)
	return [decode(decode_payload(p), schema) for _, p in sorted(payloads)]


def test_10000_documents_backfill_with_a_progress_bar_and_resume_after_an_interruption(site):
	configure()
	names = insert_invoices(10_000)
	out = io.StringIO()
	# Ctrl-C arrives while chunk 7 is being written: its events and checkpoint are not committed
	# (commits: 1 the new job, 2 the job Running, 2 + k chunk k)
	interrupted = FailingDatabase(frappe.db, fail_at=2 + 7, error=KeyboardInterrupt())
	first, resumed = ops.backfill(SI, chunk_size=500, stream=out, db=interrupted)
	assert (first.outcome, resumed) == (jobs.Outcome.INTERRUPTED, False)
	job = jobs.load(frappe.db, first.job.name)
	assert (job.status, job.processed, job.total, job.last_error) == (
		"Interrupted",
		3000,
		10_000,
		"interrupted",
	)
	written = event_log()
	assert len(written) == 3000 == len({r.event_id for r in written})
	assert job.checkpoint == {"after": names[2999]}

	second, resumed = ops.backfill(SI, chunk_size=500, stream=out)
	assert (second.outcome, resumed, second.job.name) == (jobs.Outcome.COMPLETED, True, job.name)
	job = jobs.load(frappe.db, job.name)
	assert (job.status, job.processed, job.emitted, job.skipped) == ("Completed", 10_000, 10_000, 0)

	rows = event_log()
	ids = [r.event_id for r in rows]
	assert len(ids) == 10_000 == len(set(ids)), "no event id twice"
	assert sorted(r.reference_name for r in rows) == names, "every document once"
	assert {(r.reference_doctype, r.event_type, r.status) for r in rows} == {(SI, "submitted", "Queued")}
	# the live formula: a document unchanged since its live event gets the same id
	state = {
		n: (m, s)
		for n, m, *s in frappe.db.sql(
			"SELECT name, modified, status, outstanding_amount FROM `tabSales Invoice`"
		)
	}
	assert all(
		r.event_id == event_id(SI, r.reference_name, "submitted", *state[r.reference_name]) for r in rows
	)
	# the real codec: records decode with the shipped schema, children included
	sample = decoded([rows[0], rows[-1]])
	assert [s["document"]["name"] for s in sample] == [rows[0].reference_name, rows[-1].reference_name]
	assert [[i["item_code"] for i in s["document"]["items"]] for s in sample] == [["SKU-001", "SKU-002"]] * 2
	assert sample[0]["company"] == COMPANY and sample[0]["document"]["status"] == "Paid"
	sequences = frappe.db.sql(
		"SELECT company_sequence FROM `tabStreaming Event Log` WHERE company = %s ORDER BY name", (COMPANY,)
	)
	assert [s[0] for s in sequences] == list(range(1, 10_001)), "gapless company sequence"

	lines = out.getvalue().splitlines()
	assert lines[-1].startswith("Backfill Sales Invoice  [####################]  10,000/10,000  100%")
	assert any(re.search(r"  3,000/10,000   30%  [\d,]+/s  ETA \d+:\d\d:\d\d$", line) for line in lines)
	assert any(
		line.startswith("Backfill Sales Invoice  [#######.............]  3,500/10,000  ") for line in lines
	)


def test_a_failing_chunk_is_rolled_back_with_its_checkpoint_and_the_job_says_why(site):
	configure()
	names = insert_invoices(1200)
	failing = FailingDatabase(frappe.db, fail_at=2 + 2, error=RuntimeError("lock wait timeout"))
	result, _ = ops.backfill(SI, chunk_size=500, db=failing)
	assert result.outcome == jobs.Outcome.FAILED and result.error == "RuntimeError: lock wait timeout"
	job = jobs.load(frappe.db, result.job.name)
	assert (job.status, job.processed, job.last_error) == ("Failed", 500, "RuntimeError: lock wait timeout")
	assert len(event_log()) == 500

	result, resumed = ops.backfill(SI, chunk_size=500)
	assert result.ok and resumed and result.chunks == 2
	rows = event_log()
	assert sorted(r.reference_name for r in rows) == names and len({r.event_id for r in rows}) == 1200


def test_a_rerun_writes_no_event_id_again_and_a_changed_document_gets_a_new_one(site):
	configure()
	insert_invoices(40)
	assert ops.backfill(SI, chunk_size=15)[0].ok
	again, resumed = ops.backfill(SI, chunk_size=15)
	assert again.ok and not resumed and again.job.name != 0
	assert (again.job.processed, again.job.emitted, again.job.skipped) == (40, 0, 40)

	frappe.db.sql(
		"UPDATE `tabSales Invoice` SET modified = %s, status = 'Return' WHERE name = 'ACC-SINV-000007'",
		(datetime(2025, 1, 1, 9, 0),),
	)
	frappe.db.commit()  # the document changed since the first backfill, in a transaction of its own
	restarted, _ = ops.backfill(SI, chunk_size=15, restart=True)
	assert (restarted.job.emitted, restarted.job.skipped) == (1, 39)
	rows = event_log()
	assert len(rows) == 41 == len({r.event_id for r in rows})
	assert decoded([rows[-1]])[0]["document"]["status"] == "Return"


def test_scope_filters_company_and_posting_dates(site):
	configure()
	insert_invoices(30, company=COMPANY, start=date(2024, 1, 1))  # 2024-01-01 .. 2024-01-30
	frappe.db.sql("UPDATE `tabSales Invoice` SET company = %s WHERE name <= 'ACC-SINV-000010'", (OTHER,))
	frappe.db.sql("UPDATE `tabSales Invoice` SET docstatus = 2 WHERE name = 'ACC-SINV-000020'")
	frappe.db.commit()  # the documents exist before the backfill plans its scope
	source = backfill.plan(
		frappe.db, SI, [("items", "Sales Invoice Item")], COMPANY, date(2024, 1, 12), date(2024, 1, 25)
	)
	assert source.date_column == "posting_date"
	assert source.count(frappe.db) == 13  # 12th..25th is 14 days, minus the cancelled one
	result, _ = ops.backfill(SI, company=COMPANY, from_date=date(2024, 1, 12), to_date=date(2024, 1, 25))
	assert result.ok and result.job.emitted == 13
	assert {r.reference_name for r in event_log()} == {f"ACC-SINV-{i:06d}" for i in range(12, 26) if i != 20}


def test_a_document_that_cannot_be_built_becomes_a_dead_letter_with_the_reason(site):
	configure()
	insert_invoices(3)
	frappe.db.sql("UPDATE `tabSales Invoice` SET posting_time = '30:00:00' WHERE name = 'ACC-SINV-000002'")
	frappe.db.commit()  # the bad row exists before the backfill reads it
	result, _ = ops.backfill(SI)
	assert result.ok and result.job.emitted == 3
	rows = event_log("name, reference_name, status, last_error")
	assert [(r.reference_name, r.status) for r in rows] == [
		("ACC-SINV-000001", "Queued"),
		("ACC-SINV-000002", "Dead"),
		("ACC-SINV-000003", "Queued"),
	]
	assert rows[1].last_error == "BuildError: envelope.event_time: 1 day, 6:00:00 is not a time of day"


def test_refusals_change_nothing(site):
	configure()
	with pytest.raises(backfill.BackfillRefused, match="does not stream its submit events"):
		ops.backfill("Sales Invoice Item")
	configure(event_catalog=[])
	with pytest.raises(backfill.BackfillRefused, match="does not stream"):
		ops.backfill(SI)
	configure(enabled=0)
	with pytest.raises(backfill.BackfillRefused, match="disabled"):
		ops.backfill(SI)
	with pytest.raises(backfill.BackfillRefused, match="no company field"):
		backfill.plan(frappe.db, "Sales Invoice Item", company=COMPANY)
	with pytest.raises(backfill.BackfillRefused, match="after"):
		backfill.plan(frappe.db, SI, from_date=date(2024, 2, 1), to_date=date(2024, 1, 1))
	with pytest.raises(backfill.BackfillRefused, match="no table"):
		backfill.plan(frappe.db, f"No Such {uuid.uuid4().hex[:6]}")
	assert event_log() == [] and frappe.db.sql("SELECT COUNT(*) FROM `tabStreaming Backfill`")[0][0] == 0


def test_a_job_another_process_runs_is_left_alone(site, mariadb):
	from frappe.standin import StandinDatabase

	from erpnext_streaming.outbox.mariadb import get_lock, lock_name

	configure()
	insert_invoices(5)
	job = jobs.create(frappe.db, jobs.Kind.BACKFILL, datetime.now(), reference_doctype=SI)
	frappe.db.commit()  # the job row is visible to the other session
	other = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})
	try:
		assert get_lock(other, lock_name(other, f"job:{job.name}"), 0)
		result, resumed = ops.backfill(SI)
		assert (result.outcome, resumed) == (jobs.Outcome.BUSY, True)
		assert event_log() == []
	finally:
		other.close()  # the lock dies with its connection
	assert ops.backfill(SI)[0].ok


def test_the_progress_bar_shows_count_percentage_rate_and_eta():
	now = [100.0]
	out = io.StringIO()
	bar = Progress("Backfill GL Entry", 1000, out, clock=lambda: now[0], interval=1.0)
	now[0] = 102.0
	bar.update(200)
	now[0] = 102.5
	bar.update(205)  # still 20 %: not drawn
	now[0] = 104.0
	bar.update(400)
	now[0] = 110.0
	bar.update(1000)
	bar.close("done")
	assert out.getvalue().splitlines() == [
		"Backfill GL Entry  [####................]  200/1,000   20%  100/s  ETA 0:00:08",
		"Backfill GL Entry  [########............]  400/1,000   40%  100/s  ETA 0:00:06",
		"Backfill GL Entry  [####################]  1,000/1,000  100%  100/s  ETA 0:00:00",
		"done",
	]
	tty = io.StringIO()
	resumed = Progress("Replay", 10, tty, clock=lambda: now[0], tty=True, start=4, interval=1.0)
	now[0] = 113.0
	resumed.update(7)
	now[0] = 113.5
	resumed.update(8)  # within the interval: not drawn on a terminal
	resumed.close()
	assert tty.getvalue() == (
		"\rReplay  [##############......]  7/10   70%  1/s  ETA 0:00:03"
		"\rReplay  [################....]  8/10   80%  1/s  ETA 0:00:02\n"
	)


def test_the_job_table_round_trips_scope_and_checkpoint(site):
	now = datetime(2026, 11, 24, 9, 0)
	job = jobs.create(
		frappe.db,
		jobs.Kind.REVALUATION,
		now,
		reference_doctype="Stock Ledger Entry",
		company=COMPANY,
		repost_item_valuation="REPOST-0001",
		scope=[["ITEM-1", "Stores - WP", "2024-01-01 00:00:00.000000"]],
	)
	job.checkpoint = {
		"pair": 0,
		"after": ["2024-01-02 10:00:00.000000", "2024-01-02 10:00:01.000000", "SLE-1"],
	}
	job.processed = 3
	jobs.save(frappe.db, job, now + timedelta(minutes=1))
	frappe.db.commit()  # the checkpoint is saved as the job's chunk commits it
	again = jobs.load(frappe.db, job.name)
	assert again.scope == [["ITEM-1", "Stores - WP", "2024-01-01 00:00:00.000000"]]
	assert again.checkpoint == job.checkpoint and again.processed == 3 and again.status == "Queued"
	assert [
		j.name
		for j in jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION, repost_item_valuation="REPOST-0001")
	] == [job.name]
	assert jobs.find_unfinished(frappe.db, jobs.Kind.BACKFILL) == []


def test_a_backfill_does_not_post_again_a_ledger_row_that_a_cancel_flagged_after_its_event(site):
	"""ERPNext's cancel flags the voucher's original rows by a bulk UPDATE of is_cancelled and
	modified (erpnext/stock/stock_ledger.py set_as_cancel): each row's `posted` event was sent
	already, so a backfill after live capture posts it again under no new id."""
	from test_revaluation import sle

	configure()
	sle("SLE-1", "ITEM-A", "Stores - WP", datetime(2024, 3, 1, 10))
	frappe.db.commit()  # the ledger row exists before the first backfill
	assert ops.backfill("Stock Ledger Entry")[0].job.emitted == 1
	frappe.db.sql(
		"UPDATE `tabStock Ledger Entry` SET is_cancelled = 1, modified = %s WHERE name = 'SLE-1'",
		(datetime(2024, 3, 2, 9),),
	)
	frappe.db.commit()  # the cancel's bulk UPDATE is a later transaction
	again, _ = ops.backfill("Stock Ledger Entry")
	assert (again.job.emitted, again.job.skipped) == (0, 1)
	assert [(r.reference_name, r.event_type) for r in event_log()] == [("SLE-1", "posted")]
