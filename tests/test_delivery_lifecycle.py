"""The drainer never stalls the ERP's workers and never leaves a commit waiting: it stops
within seconds of a warm shutdown, runs in slices behind other long jobs, hands over to a
successor when a commit arrives while it leaves, and applies saved settings at once.

Real forking `rq worker` processes, Apache Kafka, MariaDB and Redis (delivery/lifecycle.py).
"""

from __future__ import annotations

import signal
import threading
import time

import frappe
import pytest
from delivery_support import (
	all_delivered,
	assert_company_order,
	by_event_id,
	configure,
	consume,
	drainer_running,
	drainer_stats,
	long_queue,
	new_topic,
	report_duplicates,
	rows,
	transactions,
	wait_for,
)
from frappe.utils.background_jobs import get_job
from rq.job import JobStatus

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import jobs, lifecycle

pytestmark = pytest.mark.integration
BATCH = 20


class SteadyLoad(threading.Thread):
	"""A user committing a transaction every `interval` in the test's own thread-local site."""

	def __init__(self, topic: str, interval: float = 0.1):
		super().__init__(daemon=True)
		self.topic, self.interval = topic, interval
		self.written: list = []
		self.transactions = 0
		self.stopping = threading.Event()
		self.site = (frappe.local.site, dict(frappe.local.conf))

	def run(self) -> None:
		from frappe import standin

		site, conf = self.site
		standin.init_site(site, conf["db_params"], conf["redis_url"], conf)
		try:
			while not self.stopping.is_set():
				self.written += transactions(self.topic, self.transactions, 1)
				self.transactions += 1
				time.sleep(self.interval)
		finally:
			standin.destroy()

	def stop(self) -> list:
		self.stopping.set()
		self.join(30)
		return self.written


def test_a_warm_shutdown_ends_the_drainer_within_seconds_and_a_new_worker_takes_over(
	site, workers, kafka_bootstrap
):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters, batch_size=BATCH, idle_exit_seconds=60)
	(worker,) = workers.start(1)
	load = SteadyLoad(topic)
	load.start()
	try:
		wait_for(drainer_running, 30, "a drainer delivering under load")
		time.sleep(2)
		worker.send_signal(signal.SIGTERM)  # what `bench restart` / supervisor sends
		asked = time.monotonic()
		worker.wait(30)
		gone = time.monotonic() - asked
		wait_for(lambda: not drainer_running(), 10, "the drainer released its heartbeat")
		reason = drainer_stats().get("last_exit_reason")
		workers.start(1)
		resumed_from = time.monotonic()
		before = len(load.written)
		wait_for(
			lambda: sum(r.status == Status.SENT for r in rows()) > before or all_delivered(),
			30,
			"delivery resumed",
			interval=0.2,
		)
		resumed = time.monotonic() - resumed_from
	finally:
		written = load.stop()
	wait_for(all_delivered, 60, "everything delivered", interval=0.5)
	got = consume(kafka_bootstrap, topic, expect=len(written), settle=2)
	duplicates = report_duplicates(got, {r.event_id: r for r in rows()})
	print(
		f"worker gone {gone:.1f} s after SIGTERM; delivery resumed {resumed:.1f} s after a new worker started"
	)
	assert gone <= 5, f"the worker took {gone:.1f} s to leave"
	assert resumed <= 10
	assert set(by_event_id(got)) == {e.event_id for e in written}, "nothing lost"
	assert sum(duplicates.values()) <= BATCH
	assert_company_order(got)
	assert reason in ("worker shutting down", "shutdown requested"), reason


def test_a_long_job_waiting_behind_a_busy_drainer_starts_within_one_slice(site, workers, kafka_bootstrap):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters, batch_size=BATCH, idle_exit_seconds=60)
	frappe.local.conf["erpnext_streaming_drainer_slice_seconds"] = 3
	workers.start(1)  # ONE long worker, as on a default bench
	load = SteadyLoad(topic, interval=0.05)
	load.start()
	try:
		wait_for(drainer_running, 30, "the drainer busy under load")
		other = long_queue().enqueue("time.sleep", 0.2)  # ERPNext's Repost Item Valuation, say
		queued = time.monotonic()
		wait_for(lambda: other.get_status(refresh=True) == JobStatus.FINISHED, 30, "the long job ran")
		waited = time.monotonic() - queued
	finally:
		written = load.stop()
	wait_for(all_delivered, 60, "everything delivered", interval=0.5)
	print(f"the long job waited {waited:.1f} s behind a drainer with a 3 s slice")
	assert waited <= 3 + 5, "within one slice (and a batch)"
	got = consume(kafka_bootstrap, topic, expect=len(written), settle=2)
	assert set(by_event_id(got)) == {e.event_id for e in written}
	assert_company_order(got)


def test_a_commit_while_the_drainer_is_leaving_is_delivered_by_its_successor(site, workers, kafka_bootstrap):
	"""The leaving window made certain: the drainer's job still counts as started (so the
	commit's own enqueue is skipped) and its heartbeat is gone; its last step hands over."""
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters, batch_size=BATCH)
	leaving = long_queue().enqueue("time.sleep", 0, job_id=f"{frappe.local.site}::{jobs.DRAINER_JOB_ID}")
	leaving.set_status(JobStatus.STARTED)
	written = transactions(topic, 0, 3)  # the after-commit wake-up cannot enqueue a drainer now
	assert [j for j in long_queue().get_jobs() if j.id != leaving.id] == []
	redis_client = jobs.queue_redis(timeout=5)
	assert jobs.hand_over("idle", redis_client, frappe.local.site), "a wake-up was pending"
	successor = get_job(jobs.DRAINER_JOB_IDS[1])
	assert successor is not None and successor.get_status() == JobStatus.QUEUED
	long_queue().remove(leaving)
	workers.start(1)
	committed = time.monotonic()
	wait_for(all_delivered, 5, "delivered within 5 s by the successor", interval=0.1)
	print(f"delivered {time.monotonic() - committed:.1f} s after the worker started")
	got = consume(kafka_bootstrap, topic, expect=len(written))
	assert set(by_event_id(got)) == {e.event_id for e in written}


def test_a_drainer_that_leaves_with_nothing_to_do_enqueues_no_successor(site, kafka_bootstrap):
	configure(kafka_bootstrap, new_topic(kafka_bootstrap, 1))
	redis_client = jobs.queue_redis(timeout=5)
	redis_client.delete(jobs.signals.wake_key(frappe.local.site))
	assert not jobs.hand_over("idle", redis_client, frappe.local.site)
	assert not jobs.hand_over("another drainer is running", redis_client, frappe.local.site)
	assert all(get_job(job_id) is None for job_id in jobs.DRAINER_JOB_IDS)


def test_saved_settings_end_the_slice_at_once(site, workers, kafka_bootstrap):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure("127.0.0.1:1", dead_letters, batch_size=BATCH, idle_exit_seconds=60)  # a wrong server
	workers.start(1)
	written = transactions(topic, 0, 6)
	wait_for(lambda: any(r.status == Status.FAILED for r in rows()), 30, "failing on the wrong server")
	configure(kafka_bootstrap, dead_letters, batch_size=BATCH, idle_exit_seconds=60)
	lifecycle.settings_saved(jobs.queue_redis(timeout=5), frappe.local.site)  # the form's on_update
	saved = time.monotonic()
	exit_reasons: list[str] = []

	def delivered() -> bool:
		exit_reasons.append(drainer_stats().get("last_exit_reason", ""))
		return all_delivered()

	wait_for(delivered, 20, "delivered with the new settings", interval=0.2)
	print(f"delivered {time.monotonic() - saved:.1f} s after the settings were saved")
	assert "settings changed" in exit_reasons, exit_reasons
	got = consume(kafka_bootstrap, topic, expect=len(written))
	assert set(by_event_id(got)) == {e.event_id for e in written}
