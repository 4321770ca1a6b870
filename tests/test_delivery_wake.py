"""The after-commit wake-up and the sweeper, on real Redis and RQ (and a Redis outage)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import datetime, timedelta

import frappe
import pytest
import redis
from delivery_support import (
	all_delivered,
	by_event_id,
	clear_long_queue,
	commit_transaction,
	configure,
	consume,
	event,
	long_queue,
	new_topic,
	rows,
	wait_for,
)
from frappe import standin
from frappe.utils.background_jobs import get_job
from harness.services import start_redis

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import jobs, signals, wake
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration


def queued_drainers() -> list:
	return [
		j for j in long_queue().get_jobs() if j.id.endswith(jobs.DRAINER_JOB_ID) and frappe.local.site in j.id
	]


def test_a_commit_signals_the_drainer_and_enqueues_it_only_when_none_is_queued_or_running(site, workers):
	configure("127.0.0.1:9", "dead-letters")
	client = redis.Redis.from_url(frappe.conf.redis_queue)
	wake_key = signals.wake_key(site)

	commit_transaction([event("a", "Acme Corp", "t")])
	assert len(queued_drainers()) == 1 and client.llen(wake_key) == 1
	commit_transaction([event("b", "Acme Corp", "t")])
	assert len(queued_drainers()) == 1, "deduplicated while queued"
	assert client.llen(wake_key) == 1, "at most one token waits"

	clear_long_queue()
	client.set(signals.heartbeat_key(site), "a-running-drainer", px=60000)
	try:
		commit_transaction([event("c", "Acme Corp", "t")])
		assert queued_drainers() == [], "a running drainer is only signalled"
		assert client.lpop(wake_key) == b"1"
	finally:
		client.delete(signals.heartbeat_key(site))
	commit_transaction([event("d", "Acme Corp", "t")])
	assert len(queued_drainers()) == 1
	job = get_job(jobs.DRAINER_JOB_ID)
	assert job.get_status() == "queued" and job.timeout == 1500 and job.origin.endswith(":long")


def test_redis_down_at_commit_the_commit_succeeds_and_the_sweeper_delivers_later(
	site, kafka_bootstrap, workers, monkeypatch, caplog
):
	"""Our own redis-server as the queue Redis; SIGSTOP makes it hang (the harder case
	than a refused connection): the after-commit path must not wait on it."""
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters)
	queue_url, queue_redis = start_redis()
	shared = frappe.local.conf["redis_queue"]
	frappe.local.conf["redis_queue"] = queue_url
	monkeypatch.setattr(wake.breaker, "open_seconds", 3.0)
	calls = []
	real_signal = signals.signal
	monkeypatch.setattr(signals, "signal", lambda *a: calls.append(a) or real_signal(*a))
	caplog.set_level(logging.INFO, logger="erpnext_streaming")
	written = []
	try:
		os.kill(queue_redis.process.pid, signal.SIGSTOP)
		try:
			started = time.monotonic()
			for i in range(3):
				batch = [event(f"r{i}", "Acme Corp", topic), event(f"g{i}", "Globex Ltd", topic)]
				commit_transaction(batch)  # must not raise
				written += batch
			print(f"\n3 commits with the queue Redis hanging took {time.monotonic() - started:.3f} s")
		finally:
			os.kill(queue_redis.process.pid, signal.SIGCONT)
		assert len(calls) == 1, "after the first failure the breaker skips Redis"
		warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
		assert len(warnings) == 1 and "sweeper" in warnings[0].getMessage(), "logged once"
		assert {r.status for r in rows()} == {Status.QUEUED} and len(rows()) == 6

		# Redis is back: the scheduler's sweeper enqueues a drainer; a worker runs it
		workers.start(1, redis_url=queue_url)
		assert jobs.sweep()["drainer"] == "enqueued"
		wait_for(all_delivered, 60, "the sweeper's drainer delivered the waiting rows")
		got = consume(kafka_bootstrap, topic, expect=6)
		assert set(by_event_id(got)) == {e.event_id for e in written}

		# and the after-commit path recovers once the breaker lets a call through
		wait_for(wake.breaker.allow, 10, "the breaker half-opens")
		before = len(calls)
		commit_transaction([event("after", "Acme Corp", topic)])
		assert len(calls) == before + 1 and not wake.breaker.failing
		assert any("reachable again" in r.getMessage() for r in caplog.records)
	finally:
		frappe.local.conf["redis_queue"] = shared
		workers.stop_all()
		queue_redis.stop()


def _sweep_in_thread(site_name, params, redis_url, conf, singles, results):
	standin.init_site(site_name, params, redis_url, conf)
	for doctype, values in singles.items():
		standin.set_single(doctype, values)
	try:
		results.append(jobs.sweep())
	finally:
		standin.destroy()


def test_the_sweeper_releases_expired_leases_and_is_idempotent_when_run_concurrently(site, mariadb, workers):
	configure("127.0.0.1:9", "dead-letters")
	now = datetime.now()
	write(frappe.db, [event(f"s{i}", "Acme Corp", "t") for i in range(3)], now)
	frappe.db.commit()  # no wake-up: as if Redis had been down at commit time
	names = [r.name for r in rows()]
	frappe.db.sql(  # leases are UTC from the database's clock
		"UPDATE `tabStreaming Event Log` SET lease_owner = 'dead-drainer', "
		"lease_expires_at = UTC_TIMESTAMP(6) - INTERVAL 5 SECOND WHERE name = %s",
		(names[0],),
	)
	frappe.db.commit()

	params = {k: v for k, v in mariadb.items() if k != "tables"}
	conf = {k: v for k, v in frappe.local.conf.items() if k not in ("db_params", "redis_url")}
	results: list[dict] = []
	threads = [
		threading.Thread(
			target=_sweep_in_thread,
			args=(site, params, frappe.local.conf.redis_url, conf, standin.registered_singles(), results),
		)
		for _ in range(4)
	]
	for t in threads:
		t.start()
	for t in threads:
		t.join(30)
	print(f"\nconcurrent sweeps: {results}")
	assert len(results) == 4
	assert sum(r["released"] for r in results if r["ran"]) == 1
	assert rows()[0].lease_owner is None
	assert len(queued_drainers()) == 1, "exactly one drainer queued"
	assert {r["drainer"] for r in results if r["ran"]} <= {"enqueued", "queued"}
	assert jobs.sweep()["drainer"] == "queued" and len(queued_drainers()) == 1


def test_the_sweeper_does_nothing_when_nothing_waits(site, workers):
	configure("127.0.0.1:9", "dead-letters")
	assert jobs.sweep() == {
		"ran": True,
		"released": 0,
		"pending": False,
		"drainer": "not needed",
		"lost": 0,
	}
	assert queued_drainers() == []
	standin.set_single("Streaming Settings", {"enabled": 0})
	assert jobs.sweep()["ran"] is False
