"""Nothing is lost when the broker goes away under load or a drainer is killed mid-batch.

Each test runs its own Apache Kafka node (SIGSTOP/SIGCONT simulates the outage: the
broker stops answering without closing its connections) and real forking rq workers. The sweeper runs as the scheduler
would run it. Duplicates (same event id twice) are at-least-once's price: they are
counted, printed, and must stay within one batch per failed batch (a bundle with an
undelivered event is sent again whole, with its company's bundles after it in the batch)
or, for a killed drainer, within the batch it had produced.
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict

import frappe
import pytest
from delivery_support import (
	COMPANIES,
	all_delivered,
	assert_company_order,
	by_event_id,
	commit_transaction,
	configure,
	consume,
	cursor_leases,
	cursors,
	drainer_running,
	drainer_stats,
	event,
	new_topic,
	report_duplicates,
	rows,
	statuses,
	sweeping,
	transactions,
	wait_for,
)
from harness.kafka import start_kafka

from erpnext_streaming.constants import BUNDLE_TABLE, DEFAULT_LEASE_SECONDS, Status
from erpnext_streaming.delivery import jobs

pytestmark = pytest.mark.integration
BATCH = 10
# hooks.py runs the sweeper every minute
SWEEP_PERIOD_SECONDS = 60


@pytest.fixture
def own_broker():
	cluster = start_kafka(1)
	try:
		yield cluster.bootstrap, cluster.nodes[0].pid
	finally:
		cluster.stop()


def test_a_broker_outage_under_load_loses_nothing(site, own_broker, workers):
	bootstrap, broker_pid = own_broker
	topic, dead_letters = new_topic(bootstrap), new_topic(bootstrap, 1)
	configure(
		bootstrap,
		dead_letters,
		batch_size=BATCH,
		properties={"message.timeout.ms": "2000"},
		idle_exit_seconds=5,
	)
	workers.start(1)
	written = transactions(topic, 0, 10)
	wait_for(lambda: statuses().get(Status.SENT), 30, "first events delivered before the outage")

	os.kill(broker_pid, signal.SIGSTOP)  # the broker stops answering, mid-load
	try:
		written += transactions(topic, 10, 15)
		wait_for(lambda: statuses().get(Status.FAILED), 30, "events Failed while the broker is away")
		written += transactions(topic, 25, 5)
		wait_for(lambda: max(r.attempts for r in rows()) >= 2, 30, "retried with backoff, failed again")
		during = statuses()
		assert not during.get(Status.DEAD), "retriable errors never kill an event"
		failed = [r for r in rows() if r.status == Status.FAILED]
		assert all("_MSG_TIMED_OUT" in r.last_error or "TIMED_OUT" in r.last_error for r in failed), {
			r.last_error for r in failed
		}
	finally:
		os.kill(broker_pid, signal.SIGCONT)
	written += transactions(topic, 30, 5)
	wait_for(sweeping(all_delivered), 120, "everything delivered after the broker returned", interval=1)

	log = {r.event_id: r for r in rows()}
	assert {r.status for r in log.values()} == {Status.SENT}
	got = consume(bootstrap, topic, expect=len(written), settle=3)
	assert set(by_event_id(got)) == {e.event_id for e in written}, "nothing lost"
	duplicates = report_duplicates(got, log)
	wait_for(lambda: not drainer_running() and drainer_stats().get("runs"), 60, "the drainers left")
	stats = drainer_stats()
	print(f"Event Log during the outage: {during}; drainer statistics: {stats}")
	failed_batches = int(stats["failed_batches"])
	assert failed_batches >= 2
	# a failed batch's events may all be in Kafka once more: the delivered ones of a failed
	# bundle (and its company's bundles after it) are sent again with the retry, and a
	# message timed out during the outage may still have reached the broker
	assert sum(duplicates.values()) <= BATCH * failed_batches, "at most one batch per failed batch"
	assert_company_order(got)


def test_a_drainer_killed_mid_batch_is_replaced_within_one_sweeper_period_and_loses_nothing(
	site, own_broker, workers
):
	"""SIGKILL (a container's grace period ran out): its heartbeat lapses within seconds, and the
	next sweep replaces the job and frees the dead drainer's leases, long before they expire."""
	bootstrap, broker_pid = own_broker
	topic, dead_letters = new_topic(bootstrap), new_topic(bootstrap, 1)
	lease = DEFAULT_LEASE_SECONDS
	configure(
		bootstrap,
		dead_letters,
		batch_size=BATCH,
		lease_seconds=lease,
		properties={"message.timeout.ms": "4000"},
	)
	written = transactions(topic, 0, 12)  # the drainer is enqueued; no worker yet
	frappe.db.commit()
	assert frappe.db.sql(f"SELECT MAX(events) FROM `{BUNDLE_TABLE}`")[0][0] == 1  # a bundle per event
	first_batch = {r.event_id for r in rows()[:BATCH]}  # the first claim: the first bundles in name order

	os.kill(broker_pid, signal.SIGSTOP)  # so the drainer's flush cannot finish
	try:
		(worker,) = workers.start(1)
		leased = wait_for(cursor_leases, 30, "the drainer claimed a batch", interval=0.05)
		horses = workers.kill(worker)  # SIGKILL worker and work horse, mid-batch
		assert horses, "a work horse was running the drainer"
	finally:
		os.kill(broker_pid, signal.SIGCONT)
	(killed,) = set(leased.values())
	print(f"\nkilled drainer {killed} leasing {sorted(leased)} (work horse {horses})")
	assert {r.status for r in rows()} == {Status.QUEUED}
	assert not any(c["delivered_through"] for c in cursors().values())  # nothing was recorded

	killed_at = time.monotonic()
	workers.start(1)
	outcomes: list[str] = []
	wait_for(sweeping(all_delivered, outcomes), lease, "the next drainer delivered everything", interval=1)
	replaced_after = time.monotonic() - killed_at
	print(f"sweeper saw: {' -> '.join(dict.fromkeys(outcomes))}; all delivered {replaced_after:.1f} s after")
	assert "replaced" in outcomes, "the dead drainer's job was replaced once its heartbeat lapsed"
	assert replaced_after < SWEEP_PERIOD_SECONDS, "replaced within one sweeper period, not a lease later"
	assert killed not in cursor_leases().values(), "the killed drainer's leases were freed"

	log = {r.event_id: r for r in rows()}
	assert {r.status for r in log.values()} == {Status.SENT}
	got = consume(bootstrap, topic, expect=len(written), settle=3)
	assert set(by_event_id(got)) == {e.event_id for e in written}, "nothing lost"
	duplicates = report_duplicates(got, log)
	# its flush could not finish, so it produced its first batch at most (the batch claimed
	# while waiting for those acks was never produced)
	assert set(duplicates) <= first_batch, "only the killed batch can repeat"
	assert all(extra == 1 for extra in duplicates.values())
	assert_company_order(got)
