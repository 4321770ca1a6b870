"""`bench streaming status` and `api.health`: the numbers, the health verdict, the texts.

Twin: erpnext_streaming/tests/test_operations.py (TestStatusAndHealth)."""

from __future__ import annotations

from datetime import datetime, timedelta

import frappe
import pytest
from operations_support import OTHER, log_row

from erpnext_streaming.constants import Status
from erpnext_streaming.operations import status

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 24, 12, 0, 0)


@pytest.fixture
def log(site):
	rows = {
		"sent-old": log_row(
			"sent-old", Status.SENT, NOW - timedelta(hours=5), sent_at=NOW - timedelta(hours=5)
		),
		"sent-new": log_row(
			"sent-new",
			Status.SENT,
			NOW - timedelta(minutes=9),
			sent_at=NOW - timedelta(minutes=8, seconds=30),
		),
		"queued-1": log_row("queued-1", Status.QUEUED, NOW - timedelta(minutes=7)),
		"queued-2": log_row(
			"queued-2", Status.QUEUED, NOW - timedelta(minutes=1), topic="erpnext.sales-invoice"
		),
		"failed": log_row(
			"failed",
			Status.FAILED,
			NOW - timedelta(minutes=3),
			error="_TRANSPORT: Connection refused",
			attempts=2,
		),
		"dead-1": log_row(
			"dead-1", Status.DEAD, NOW - timedelta(hours=2), error="MSG_SIZE_TOO_LARGE", company=OTHER
		),
		"dead-2": log_row(
			"dead-2",
			Status.DEAD,
			NOW - timedelta(hours=1),
			error="unencodable: ValueError: bad",
			modified=NOW - timedelta(minutes=2),
		),
	}
	frappe.db.commit()
	return rows


def test_collect_counts_ages_last_sent_topics_and_the_last_error(log):
	report = status.collect(frappe.db, NOW)
	assert report.counts == {Status.QUEUED: 2, Status.SENT: 2, Status.FAILED: 1, Status.DEAD: 2}
	assert report.age(Status.QUEUED) == 7 * 60
	assert report.age(Status.FAILED) == 3 * 60
	assert report.lag_seconds == 7 * 60
	assert report.pending == 3
	assert report.last_sent_at == NOW - timedelta(minutes=8, seconds=30)
	assert report.per_topic == [
		("erpnext.gl-entry", {Status.QUEUED: 1, Status.SENT: 2, Status.FAILED: 1, Status.DEAD: 2}),
		("erpnext.sales-invoice", {Status.QUEUED: 1, Status.SENT: 0, Status.FAILED: 0, Status.DEAD: 0}),
	]
	# the newest change among Failed and Dead rows: dead-2 died 2 minutes ago
	assert report.last_error["event_log"] == log["dead-2"]
	assert report.last_error["error"] == "unencodable: ValueError: bad"
	assert report.last_error["reference"] == "GL Entry dead-2"


def test_an_empty_log_has_no_lag_and_nothing_sent(site):
	report = status.collect(frappe.db, NOW)
	assert report.counts == dict.fromkeys(Status.ALL, 0)
	assert report.lag_seconds is None and report.last_sent_at is None and report.last_error is None
	assert report.per_topic == []
	payload = status.health_payload(report)
	assert payload["status"] == status.Health.OK and payload["healthy"] is True
	assert payload["lag_seconds"] is None and payload["reasons"] == []


def test_health_payload_says_degraded_down_or_disabled_and_why(log):
	report = status.collect(frappe.db, NOW, full=False)
	assert report.per_topic == []
	report.broker = {"reachable": True, "cluster_id": "c1", "brokers": 1, "error": None}
	report.drainer = {"running": False}

	payload = status.health_payload(report, max_lag_seconds=600)
	assert payload["status"] == status.Health.DEGRADED and payload["healthy"] is False
	assert payload["reasons"] == ["1 new dead letter(s) in the last 3600 s"]  # the lag, 420 s, is within 600
	assert payload["counts"] == {"Queued": 2, "Failed": 1, "Dead": 2}
	assert payload["pending"] == 3
	assert payload["lag_seconds"] == 420.0
	assert payload["oldest_queued_seconds"] == 420.0 and payload["oldest_failed_seconds"] == 180.0
	assert payload["last_sent_at"] == "2026-11-24 11:51:30"
	assert payload["last_error"]["at"] == "2026-11-24 11:58:00"
	assert payload["broker"]["reachable"] is True and payload["drainer"] == {"running": False}

	lagging = status.health_payload(report, max_lag_seconds=60)
	assert lagging["reasons"][0] == "the oldest undelivered event waits 420 s (limit 60 s)"

	report.broker = {"reachable": False, "error": "Local: All broker connections are down"}
	down = status.health_payload(report)
	assert down["status"] == status.Health.DOWN
	assert down["reasons"][0] == "Kafka is not reachable: Local: All broker connections are down"

	report.enabled = False
	assert status.health_payload(report)["status"] == status.Health.DISABLED


def test_old_dead_letters_wait_for_a_decision_without_degrading_the_stream(log):
	"""A dead letter degrades health while it is new (someone should look); one left
	waiting is reported apart, and no longer makes the stream look unhealthy forever."""
	report = status.collect(frappe.db, NOW, full=False)
	report.broker = {"reachable": True, "cluster_id": "c1", "brokers": 1, "error": None}
	payload = status.health_payload(report, max_lag_seconds=600)
	assert payload["dead_letters"] == {"waiting": 2, "new": 1, "window_seconds": 3600}
	assert payload["reasons"] == ["1 new dead letter(s) in the last 3600 s"]  # dead-2, 2 minutes ago

	frappe.db.sql("DELETE FROM `tabStreaming Event Log` WHERE status IN ('Queued', 'Failed')")
	frappe.db.sql("DELETE FROM `tabStreaming Delivery Bundle`")
	later = status.collect(frappe.db, NOW + timedelta(hours=2), full=False)
	later.broker = report.broker
	payload = status.health_payload(later, max_lag_seconds=600)
	assert payload["status"] == status.Health.OK and payload["healthy"] is True
	assert payload["dead_letters"]["waiting"] == 2 and payload["dead_letters"]["new"] == 0
	assert payload["attention"] == ["2 dead letter(s) wait for a decision (requeue, or leave them)"]


def test_health_reads_no_sent_rows(log):
	"""The health endpoint is polled often: it counts only the rows not delivered (an index
	range), never the whole log; `bench streaming status` has the full counts."""
	report = status.collect(frappe.db, NOW, full=False)
	assert report.counts == {Status.QUEUED: 2, Status.FAILED: 1, Status.DEAD: 2}
	assert Status.SENT not in status.health_payload(report)["counts"]


def test_the_status_text_shows_every_number(log):
	report = status.collect(frappe.db, NOW)
	report.broker = {"reachable": False, "error": "Connection refused"}
	report.drainer = {"running": True}
	report.jobs = [
		{
			"name": 7,
			"kind": "Backfill",
			"reference_doctype": "Sales Invoice",
			"status": "Interrupted",
			"processed": 500,
			"total": 10000,
			"last_error": "interrupted",
		}
	]
	text = status.render_text(report)
	assert text.startswith("Streaming: DOWN (Kafka is not reachable: Connection refused; ")
	for line in (
		"  Queued             2",
		"  Sent               2",
		"  Failed             1",
		"  Dead               2",
		"  oldest Queued:  7m 00s",
		"  oldest Failed:  3m 00s",
		"  last sent:      2026-11-24 11:51:30",
		"Kafka: NOT reachable: Connection refused",
		"Drainer: running",
		"  #7 Backfill Sales Invoice Interrupted: 500/10,000 (interrupted)",
	):
		assert line in text.splitlines(), line
	assert f"  last error:     Event Log {log['dead-2']} (Dead, GL Entry dead-2, 2026-11-24 11:58:00)" in text
	topic_lines = [line.split() for line in text.splitlines() if line.startswith("  erpnext.")]
	assert topic_lines == [
		["erpnext.gl-entry", "1", "2", "1", "2"],
		["erpnext.sales-invoice", "1", "0", "0", "0"],
	]


def test_events_per_minute_by_status_for_the_chart(site):
	log_row("a", Status.SENT, NOW - timedelta(minutes=3), sent_at=NOW - timedelta(minutes=2, seconds=10))
	log_row("b", Status.SENT, NOW - timedelta(minutes=3), sent_at=NOW - timedelta(minutes=2, seconds=50))
	log_row("c", Status.QUEUED, NOW - timedelta(seconds=20))
	log_row("d", Status.DEAD, NOW - timedelta(minutes=59))
	log_row("too-old", Status.DEAD, NOW - timedelta(minutes=61))
	frappe.db.commit()
	chart = status.per_minute(frappe.db, NOW + timedelta(seconds=30), minutes=60)
	assert len(chart["labels"]) == 60 and chart["labels"][-1] == "12:00" and chart["labels"][0] == "11:01"
	values = {d["name"]: d["values"] for d in chart["datasets"]}
	assert values["Sent"][-4] == 2 and sum(values["Sent"]) == 2  # both sent during 11:57
	assert values["Queued"][-2] == 1 and sum(values["Queued"]) == 1
	assert values["Dead"][0] == 1 and sum(values["Dead"]) == 1  # 11:01; 10:59 is outside the hour
	assert sum(values["Failed"]) == 0
