"""`bench streaming replay` (Sent events again, same ids, through the outbox) and
`bench streaming requeue` (Failed/Dead with filters and --since).

Twin: erpnext_streaming/tests/test_operations.py (TestReplayAndRequeue)."""

from __future__ import annotations

from datetime import datetime, timedelta

import frappe
import pytest
from delivery_support import by_event_id, commit_transaction, configure, consume, event, new_topic, wait_for
from operations_support import COMPANY, OTHER, event_log, log_row

from erpnext_streaming.constants import EVENT_LOG_TABLE, Status
from erpnext_streaming.delivery import jobs as delivery_jobs
from erpnext_streaming.operations import replay
from erpnext_streaming.operations import site as ops

pytestmark = pytest.mark.integration
T = datetime(2026, 11, 20, 8, 0)
COLUMNS = (
	"name, event_id, status, reference_doctype, reference_name, company, company_sequence, topic, "
	"message_key, schema_name, schema_version, schema_fingerprint, payload, event_type, event_time"
)


@pytest.fixture
def sent(site):
	rows = {
		"gl-1": log_row("gl-1", Status.SENT, T, sent_at=T),
		"si-1": log_row(
			"si-1", Status.SENT, T + timedelta(hours=1), doctype="Sales Invoice", topic="erpnext.si"
		),
		"gl-2": log_row("gl-2", Status.SENT, T + timedelta(hours=2), company=OTHER, sent_at=T),
		"queued": log_row("queued", Status.QUEUED, T + timedelta(hours=2)),
		"dead": log_row("dead", Status.DEAD, T + timedelta(hours=2)),
		"gl-3": log_row("gl-3", Status.SENT, T + timedelta(hours=3), sent_at=T),
		"later": log_row("later", Status.SENT, T + timedelta(days=2), sent_at=T),
	}
	frappe.db.commit()
	return rows


def test_replay_queues_copies_of_sent_events_with_the_same_ids_in_order(sent):
	before = {r.name: r for r in event_log(COLUMNS)}
	result = replay.replay(frappe.db, lambda: T + timedelta(days=3), T, T + timedelta(days=1), chunk_size=2)
	assert (result.matched, result.queued) == (4, 4)
	assert (result.first, result.last) == (sent["gl-1"], sent["gl-3"])
	after = event_log(COLUMNS)
	originals, copies = after[: len(before)], after[len(before) :]
	assert {r.name: r for r in originals} == before, "the original rows are untouched"
	assert [c.reference_name for c in copies] == ["gl-1", "si-1", "gl-2", "gl-3"]
	for copy in copies:
		original = next(o for o in originals if o.reference_name == copy.reference_name)
		assert copy.status == Status.QUEUED
		for column in (
			"event_id",
			"payload",
			"topic",
			"message_key",
			"company",
			"schema_fingerprint",
			"event_type",
		):
			assert copy[column] == original[column], column
	# the copies continue each company's gapless sequence
	assert [(c.company, c.company_sequence) for c in copies] == [
		(COMPANY, 7),
		(COMPANY, 8),
		(OTHER, 2),
		(COMPANY, 9),
	]


def test_replay_filters_and_dry_run(sent):
	window = (T, T + timedelta(days=1))
	assert replay.replay(frappe.db, datetime.now, *window, dry_run=True).matched == 4
	assert event_log() and len(event_log()) == 7, "a dry run writes nothing"
	assert replay.count(frappe.db, *window, doctype="Sales Invoice") == 1
	assert replay.count(frappe.db, *window, company=OTHER) == 1
	assert replay.count(frappe.db, *window, topic="erpnext.gl-entry") == 3
	assert replay.count(frappe.db, T + timedelta(hours=1), T + timedelta(hours=3)) == 2  # end exclusive
	with pytest.raises(replay.ReplayRefused):
		replay.replay(frappe.db, datetime.now, T, T)
	result = replay.replay(frappe.db, datetime.now, *window, doctype="GL Entry", company=OTHER)
	assert result.queued == 1 and event_log()[-1].reference_name == "gl-2"


def test_replayed_events_reach_kafka_again_with_their_original_ids(site, kafka_bootstrap):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters, idle_exit_seconds=0.5)
	start = datetime.now() - timedelta(seconds=1)
	commit_transaction([event(f"R{i}", COMPANY, topic) for i in range(3)])
	delivery_jobs.drain()
	wait_for(lambda: all(r.status == Status.SENT for r in event_log()), 10, "first delivery")

	result = ops.replay(start, datetime.now() + timedelta(seconds=1))
	assert result.queued == 3
	delivery_jobs.drain()
	messages = consume(kafka_bootstrap, topic, expect=6)
	grouped = by_event_id(messages)
	assert len(grouped) == 3 and all(len(copies) == 2 for copies in grouped.values())
	for copies in grouped.values():
		assert copies[0].value == copies[1].value and copies[0].key == copies[1].key
	sequences = sorted(int(m.headers["es_company_sequence"]) for m in messages)
	assert sequences == [1, 2, 3, 4, 5, 6]


@pytest.fixture
def failures(site):
	now = datetime.now()
	rows = {
		"failed-old": log_row(
			"failed-old", Status.FAILED, now - timedelta(days=2), attempts=4, error="timeout"
		),
		"failed-new": log_row("failed-new", Status.FAILED, now - timedelta(minutes=5), attempts=1, error="x"),
		"dead-si": log_row(
			"dead-si", Status.DEAD, now - timedelta(minutes=5), doctype="Sales Invoice", error="too large"
		),
		"dead-other": log_row(
			"dead-other", Status.DEAD, now - timedelta(minutes=5), company=OTHER, error="y"
		),
		"sent": log_row("sent", Status.SENT, now - timedelta(minutes=5), sent_at=now),
	}
	in_flight = log_row("in-flight", Status.DEAD, now - timedelta(minutes=5), error="z")
	frappe.db.sql(  # leases are UTC from the database's clock
		f"UPDATE `{EVENT_LOG_TABLE}` SET lease_owner = 'drainer', "
		"lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL 5 MINUTE WHERE name = %s",
		(in_flight,),
	)
	frappe.db.commit()
	return rows


def statuses() -> dict[str, tuple]:
	return {r.reference_name: (r.status, r.attempts) for r in event_log("reference_name, status, attempts")}


def test_requeue_filters_by_status_since_doctype_and_company(failures):
	assert ops.requeue(dry_run=True) == {"matched": 4, "requeued": 0, "dry_run": True}
	assert statuses()["failed-old"] == (Status.FAILED, 4), "a dry run changes nothing"

	assert ops.requeue(["Dead"], doctype="Sales Invoice")["requeued"] == 1
	assert statuses()["dead-si"] == (Status.QUEUED, 0)

	since = datetime.now() - timedelta(hours=1)
	assert ops.requeue(["Failed"], since=since)["requeued"] == 1
	assert statuses()["failed-new"] == (Status.QUEUED, 0)
	assert statuses()["failed-old"] == (Status.FAILED, 4)

	assert ops.requeue(company=OTHER)["requeued"] == 1
	result = ops.requeue()
	assert result == {"matched": 1, "requeued": 1, "dry_run": False}  # failed-old; in-flight is skipped
	after = statuses()
	assert after["in-flight"] == (Status.DEAD, 0) and after["sent"] == (Status.SENT, 0)
	assert ops.requeue() == {"matched": 0, "requeued": 0, "dry_run": False}


def test_requeue_walks_every_matching_row_in_committed_chunks(failures):
	"""No cap on the rows a requeue reaches: it goes through them all, a chunk at a time,
	each chunk committed (its bundles built under the counter locks of that chunk only)."""
	assert ops.requeue(chunk=1) == {"matched": 4, "requeued": 4, "dry_run": False}
	after = statuses()
	assert {name for name, (status, _) in after.items() if status == Status.QUEUED} == {
		"failed-old",
		"failed-new",
		"dead-si",
		"dead-other",
	}
	assert after["in-flight"] == (Status.DEAD, 0)


def test_a_capture_failure_is_never_requeued_it_has_nothing_to_publish(site):
	from erpnext_streaming import api
	from erpnext_streaming.outbox.requeue import NO_PAYLOAD_REASON, RequeueRefused, requeue

	now = datetime.now()
	broken = log_row("broken", Status.DEAD, now, error="BuildError: envelope.modified: ...", payload=b"")
	log_row("fine", Status.DEAD, now, error="MSG_SIZE_TOO_LARGE")
	frappe.db.commit()
	assert ops.requeue() == {"matched": 1, "requeued": 1, "dry_run": False}
	assert statuses() == {"broken": (Status.DEAD, 0), "fine": (Status.QUEUED, 0)}
	with pytest.raises(RequeueRefused) as refused:
		requeue(frappe.db, [broken], now)
	assert refused.value.rows == [(broken, NO_PAYLOAD_REASON)]
	with pytest.raises(frappe.ValidationError, match="has no encoded event"):
		api.requeue(names=[broken])


def test_a_replayed_copy_keeps_the_rows_encoding(sent):
	from erpnext_streaming.constants import Encoding

	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET encoding = %s WHERE name = %s",
		(Encoding.SINGLE_OBJECT, sent["gl-3"]),
	)
	frappe.db.commit()
	replay.replay(frappe.db, datetime.now, T + timedelta(hours=3), T + timedelta(hours=4))
	rows = event_log("name, reference_name, status, encoding")
	assert [(r.reference_name, r.status, r.encoding) for r in rows[-1:]] == [
		("gl-3", Status.QUEUED, Encoding.SINGLE_OBJECT)
	]
