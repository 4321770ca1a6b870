"""The drainer core on a real broker, MariaDB and Redis, run in this process: fatal
producer errors, bounded flush, heartbeat and exit rules."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import datetime, timedelta

import frappe
import pymysql
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from delivery_support import (
	COMPANIES,
	all_delivered,
	by_event_id,
	commit_transaction,
	consume,
	cursor_leases,
	cursors,
	event,
	new_topic,
	rows,
)
from delivery_support import unsettled as unsettled_on
from frappe.standin import StandinDatabase
from harness.kafka import start_kafka

from erpnext_streaming import kafka_config
from erpnext_streaming.constants import BUNDLE_TABLE, CURSOR_TABLE, RECEIPT_TABLE, Status
from erpnext_streaming.delivery import bundles, signals
from erpnext_streaming.delivery import drainer as drainer_module
from erpnext_streaming.delivery.drainer import Drainer
from erpnext_streaming.delivery.environment import DrainerConfig, SystemClock
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.delivery.outcomes import BatchOutcome, InFlight
from erpnext_streaming.delivery.policy import RetryPolicy, classify
from erpnext_streaming.delivery.producer import Delivery, KafkaProducer, OutgoingMessage
from erpnext_streaming.delivery.state import Outcome
from erpnext_streaming.outbox.records import Published
from erpnext_streaming.settings import StreamingConfig

pytestmark = pytest.mark.integration


def producer_conf(bootstrap: str, **extra: str) -> dict:
	props = {"linger.ms": "5", "message.timeout.ms": "3000", **extra}
	return kafka_config.producer_config(
		StreamingConfig(enabled=True, bootstrap_servers=bootstrap, producer_properties=tuple(props.items()))
	)


def make_drainer(mariadb, redis_url, factory, **config) -> Drainer:
	db = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})
	client = signals.client(redis_url, 5)
	site = frappe.local.site
	defaults = {"idle_exit_seconds": 1, "poll_seconds": 0.2, "flush_timeout_seconds": 4}
	return Drainer(
		db=db,
		producer_factory=factory,
		wake=signals.RedisWake(client, site),
		heartbeat=signals.RedisHeartbeat(client, site, f"test-{os.getpid()}"),
		clock=SystemClock(),
		config=DrainerConfig(site=site, dead_letter_topic="", **{**defaults, **config}),
		policy=RetryPolicy(base_seconds=0.2, cap_seconds=0.4, max_attempts=5),
		secrets=("s3cr3t-sasl",),
	)


def test_a_fatal_producer_error_discards_the_producer_and_retries_the_batch(
	site, mariadb, redis_url, kafka_bootstrap
):
	topic = new_topic(kafka_bootstrap)
	records = [event(f"f{i}", COMPANIES[i % 3], topic) for i in range(9)]
	commit_transaction(records)
	conf = producer_conf(kafka_bootstrap)
	made: list[KafkaProducer] = []

	def factory():
		producer = KafkaProducer(conf)
		if not made:  # librdkafka reports a fatal error on the first instance (error callback)
			producer.on_error(
				KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "injected; sasl s3cr3t-sasl", fatal=True)
			)
		made.append(producer)
		return producer

	drainer = make_drainer(mariadb, redis_url, factory)
	stats = drainer.run()
	drainer.db.close()

	assert stats.producers == 2 and stats.failed == 9 and stats.sent == 9 and stats.failed_batches == 1
	log = rows()
	assert {(r.status, r.attempts) for r in log} == {(Status.SENT, 1)}  # one failed attempt each
	assert all("fatal producer error" in r.last_error and "OUT_OF_ORDER" in r.last_error for r in log)
	assert not any("s3cr3t-sasl" in r.last_error for r in log) and "***" in log[0].last_error
	got = consume(kafka_bootstrap, topic, expect=9)
	assert sorted(by_event_id(got)) == sorted(r.event_id for r in records)
	assert all(len(c) == 1 for c in by_event_id(got).values())  # the fatal batch sent nothing


def test_a_flush_that_runs_out_counts_every_unreported_message_as_failed():
	cluster = start_kafka(1)
	bootstrap = cluster.bootstrap
	try:
		producer = KafkaProducer(producer_conf(bootstrap, **{"message.timeout.ms": "60000"}))
		warm = producer.finish(producer.start([OutgoingMessage("warm", "flush-test", b"k", b"v", [])], 15))
		assert warm.deliveries["warm"].error is None
		cluster.pause(1)
		try:
			batch = [OutgoingMessage(i, "flush-test", b"k", b"v", []) for i in range(3)]
			result = producer.finish(producer.start(batch, timeout=1.0))
		finally:
			cluster.resume(1)
		assert result.discard and result.fatal is None
		assert set(result.deliveries) == {0, 1, 2}
		for delivery in result.deliveries.values():
			assert delivery.error is not None and classify(delivery.error).outcome is Outcome.RETRIABLE
		producer.close(1)
	finally:
		cluster.stop()


def test_a_second_drainer_leaves_while_the_first_holds_the_heartbeat(site, mariadb, redis_url):
	client = redis.Redis.from_url(redis_url)
	key = signals.heartbeat_key(frappe.local.site)
	client.set(key, "the-running-drainer", px=60000)
	try:
		drainer = make_drainer(mariadb, redis_url, lambda: pytest.fail("no producer needed"))
		assert drainer.run().exit_reason == "another drainer is running"
		assert client.get(key) == b"the-running-drainer"  # not touched
	finally:
		client.delete(key)


def test_the_drainer_leaves_when_idle_and_before_its_runtime_budget(
	site, mariadb, redis_url, kafka_bootstrap
):
	topic = new_topic(kafka_bootstrap)
	commit_transaction([event("one", "Acme Corp", topic)])
	conf = producer_conf(kafka_bootstrap)
	idle = make_drainer(mariadb, redis_url, lambda: KafkaProducer(conf))
	stats = idle.run()
	assert (stats.exit_reason, stats.sent, stats.producers) == ("idle", 1, 1)
	assert not signals.drainer_running(signals.client(redis_url, 5), frappe.local.site)  # heartbeat gone
	assert all_delivered()

	commit_transaction([event("two", "Acme Corp", topic)])
	# a budget smaller than one cycle: it leaves at once, before claiming anything
	budget = make_drainer(mariadb, redis_url, lambda: KafkaProducer(conf), max_runtime_seconds=5)
	assert budget.run().exit_reason == "max runtime"
	assert [r.status for r in rows()] == [Status.SENT, Status.QUEUED]  # left for the next drainer


def test_a_producer_that_cannot_be_created_fails_the_rows_visibly(site, mariadb, redis_url):
	commit_transaction([event("x", "Acme Corp", "erpnext.never")])

	def factory():
		raise KafkaException(
			KafkaError(KafkaError._INVALID_ARG, "ssl.ca.pem: cannot parse; password s3cr3t-sasl")
		)

	drainer = make_drainer(mariadb, redis_url, factory, idle_exit_seconds=0.5)
	drainer.policy = RetryPolicy(base_seconds=30, cap_seconds=60, max_attempts=5)  # no retry during the test
	stats = drainer.run()
	drainer.db.close()
	assert (stats.producers, stats.failed, stats.exit_reason) == (0, 1, "idle")
	(row,) = rows()
	assert (row.status, row.attempts) == (Status.FAILED, 1)
	assert "cannot create the producer" in row.last_error and "ssl.ca.pem" in row.last_error
	assert "s3cr3t-sasl" not in row.last_error


class InjectingProducer:
	"""The real KafkaProducer, recording what each batch started with and turning the first
	delivery report of `failing` into a retriable error (the message did reach the broker)."""

	def __init__(self, conf: dict, failing: str):
		self.inner = KafkaProducer(conf)
		self.failing = failing
		self.started: list[list] = []
		self.injected = False

	def start(self, messages, timeout):
		self.started.append([m.ref for m in messages])
		return self.inner.start(messages, timeout)

	def finish(self, sending):
		result = self.inner.finish(sending)
		if not self.injected and self.failing in result.deliveries:
			self.injected = True
			result.deliveries[self.failing] = Delivery(self.failing, KafkaError(KafkaError._MSG_TIMED_OUT))
		return result

	def send(self, messages, timeout):
		return self.finish(self.start(messages, timeout))

	def close(self, timeout):
		self.inner.close(timeout)


def test_the_next_batch_continues_each_company_and_a_failed_row_still_holds_its_company_back(
	site, mariadb, redis_url, kafka_bootstrap
):
	"""The drainer claims batch n+1 while batch n's acks are on their way: it continues each
	company after its bundles in flight, and when batch n leaves a company waiting for a
	retry, that company's bundles of batch n+1 are dropped, not produced before the retry.
	(One event per transaction: one bundle per event.)"""
	topic = new_topic(kafka_bootstrap)
	acme, globex = COMPANIES[0], COMPANIES[1]
	for record in [event(f"{c[0]}{i}", c, topic) for i in range(1, 7) for c in (acme, globex)]:
		commit_transaction([record])
	names = {r.reference_name: r.name for r in rows_with_refs()}
	producers: list[InjectingProducer] = []

	def factory():
		producers.append(InjectingProducer(producer_conf(kafka_bootstrap), failing=names["A1"]))
		return producers[-1]

	drainer = make_drainer(mariadb, redis_url, factory, batch_size=4)
	stats = drainer.run()
	drainer.db.close()

	ref_of = {name: ref for ref, name in names.items()}
	started = [[ref_of[n] for n in batch] for p in producers for batch in p.started]
	assert started[0] == ["A1", "G1", "A2", "G2"]
	# batch 2 was claimed during batch 1 (continuing after A2 and G2); A1 failed, so Acme's
	# bundles were dropped and only Globex went on
	assert started[1] == ["G3", "G4"]
	first_retry = next(i for i, batch in enumerate(started) if "A1" in batch and i > 0)
	assert all("A3" not in batch for batch in started[:first_retry])
	assert started[first_retry][0] == "A1"
	assert stats.sent == 12 and stats.failed == 1
	assert all_delivered() and {r.status for r in rows()} == {Status.SENT}


def rows_with_refs() -> list:
	frappe.db.commit()  # a fresh snapshot of what the drainer committed
	return frappe.db.sql(
		"SELECT name, reference_name FROM `tabStreaming Event Log` ORDER BY name", as_dict=True
	)


class SlowFirstFinish(InjectingProducer):
	"""The real producer; the first batch's finish runs `during` first (an outage's long flush,
	another drainer taking a company over), and the report of `failing`, if any, is an error."""

	def __init__(self, conf: dict, during, failing=None):
		super().__init__(conf, failing=failing)
		self.during = during

	def finish(self, sending):
		during, self.during = self.during, None
		if during is not None:
			during()
		return super().finish(sending)


def two_company_backlog(kafka_bootstrap, per_company: int = 3) -> dict[str, int]:
	topic = new_topic(kafka_bootstrap)
	acme, globex = COMPANIES[0], COMPANIES[1]
	for record in [event(f"{c[0]}{i}", c, topic) for i in range(1, per_company + 1) for c in (acme, globex)]:
		commit_transaction([record])  # one bundle per event
	return {r.reference_name: r.name for r in rows_with_refs()}


def test_a_batch_claimed_during_a_slow_finish_is_leased_again_before_it_is_produced(
	site, mariadb, redis_url, kafka_bootstrap, monkeypatch
):
	"""Batch 2 is claimed while batch 1 finishes; when that finish takes long (an outage's
	bounded flush), batch 2's companies are leased for a full lease again before batch 2 is
	produced, so the lease outlives batch 2's own round."""
	names = two_company_backlog(kafka_bootstrap)
	monkeypatch.setattr(drainer_module, "RENEW_AFTER_SECONDS", 0.1)
	happened: list[tuple] = []
	renew = bundles.renew

	def recording_renew(db, owner, cursors, until):
		held = renew(db, owner, cursors, until)
		happened.append(("renewed", sorted(cursors), sorted(held)))
		return held

	monkeypatch.setattr(bundles, "renew", recording_renew)
	record_delivered = bundles.record_delivered

	def recording_record(db, sent, through, now):
		record_delivered(db, sent, through, now)
		if sent:
			happened.append(("recorded", sorted(ref_of[p.name] for p in sent)))

	monkeypatch.setattr(bundles, "record_delivered", recording_record)

	class Recording(SlowFirstFinish):
		def start(self, messages, timeout):
			happened.append(("started", [ref_of[m.ref] for m in messages]))
			return super().start(messages, timeout)

	ref_of = {name: ref for ref, name in names.items()}
	stats = run_drainer(
		mariadb,
		redis_url,
		lambda: Recording(producer_conf(kafka_bootstrap), during=lambda: time.sleep(0.3)),
		batch_size=2,
	)
	acme, globex = COMPANIES[0], COMPANIES[1]
	assert happened[:4] == [
		("started", ["A1", "G1"]),
		# batch 1's record writes cursor rows too: committed before the renewal writes them
		("recorded", ["A1", "G1"]),
		("renewed", [acme, globex], [acme, globex]),  # batch 2's companies, still held
		("started", ["A2", "G2"]),
	]
	assert stats.sent == 6 and all_delivered()


def test_a_company_lost_while_its_batch_waited_is_dropped_from_the_batch_not_produced(
	site, mariadb, redis_url, kafka_bootstrap, monkeypatch
):
	"""Another drainer took Globex (its lease had expired) while batch 2 waited for batch 1's
	slow finish: batch 2 goes on with Acme only, and Globex's next events are delivered once,
	after the other drainer's lease has expired."""
	names = two_company_backlog(kafka_bootstrap)
	monkeypatch.setattr(drainer_module, "RENEW_AFTER_SECONDS", 0.1)
	intruder = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})

	def take_globex():
		intruder.sql(
			f"UPDATE `{CURSOR_TABLE}` SET lease_owner = 'intruder', "
			"lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL 1 SECOND WHERE name = %s",
			(COMPANIES[1],),
		)
		intruder.commit()
		time.sleep(0.2)

	producers: list[SlowFirstFinish] = []

	def factory():
		producers.append(SlowFirstFinish(producer_conf(kafka_bootstrap), during=take_globex))
		return producers[-1]

	try:
		stats = run_drainer(mariadb, redis_url, factory, batch_size=2, idle_exit_seconds=3)
	finally:
		intruder.close()
	ref_of = {name: ref for ref, name in names.items()}
	started = [[ref_of[n] for n in batch] for p in producers for batch in p.started]
	assert started[:2] == [["A1", "G1"], ["A2"]]  # G2 was dropped from batch 2
	produced = [ref for batch in started for ref in batch]
	assert sorted(produced) == sorted(names)  # G2 and G3 later, and nothing twice
	assert produced.index("G2") < produced.index("G3")
	assert stats.sent == 6 and all_delivered()


def test_an_error_after_the_claim_gives_the_claimed_companies_back(site, mariadb, redis_url, kafka_bootstrap):
	"""Finishing batch 1 fails (the database went away) after batch 2 was claimed: the round
	gives batch 2's companies back at once instead of leaving them leased until the lease
	expires. Nothing of batch 1 was recorded, so the next drainer delivers from the cursors
	(batch 1's events maybe twice: at least once)."""
	names = two_company_backlog(kafka_bootstrap)

	def fail():
		raise RuntimeError("the database went away")

	drainer = make_drainer(
		mariadb, redis_url, lambda: SlowFirstFinish(producer_conf(kafka_bootstrap), during=fail), batch_size=2
	)
	acme, globex = COMPANIES[0], COMPANIES[1]
	try:
		drainer.prepare()
		assert drainer.cycle()  # batch 1 (A1, G1) claimed and produced
		assert cursor_leases() == {acme: drainer.owner, globex: drainer.owner}
		with pytest.raises(RuntimeError, match="went away"):
			drainer.cycle()  # batch 2 (A2, G2) claimed, then batch 1's finish fails
		assert cursor_leases() == {}
		assert {c: r["delivered_through"] for c, r in cursors().items()} == {acme: 0, globex: 0}
	finally:
		drainer.publisher.close(drainer.config.flush_timeout_seconds)
		drainer.db.close()

	stats = run_drainer(mariadb, redis_url, lambda: KafkaProducer(producer_conf(kafka_bootstrap)))
	assert stats.sent == 6 and all_delivered()
	got = by_event_id(consume(kafka_bootstrap, rows()[0].topic, expect=6))
	log = {r.event_id: r.name for r in rows()}
	assert set(got) == set(log)
	ref_of = {name: ref for ref, name in names.items()}
	assert {ref_of[log[event_id]] for event_id, copies in got.items() if len(copies) > 1} <= {"A1", "G1"}


def run_drainer(mariadb, redis_url, factory, **config):
	drainer = make_drainer(mariadb, redis_url, factory, **config)
	try:
		return drainer.run()
	finally:
		drainer.db.close()


def test_the_next_claim_continues_after_the_bundles_started_while_their_receipt_is_not_committed(
	site, mariadb, redis_url, kafka_bootstrap, monkeypatch
):
	"""Batch n+1 is claimed before batch n is finished and recorded, so a claim reads
	cursors behind what this drainer already started (and maybe delivered). It continues
	after the bundles this drainer started, never from the stale cursors: every bundle is
	claimed, and every event produced, once."""
	names = two_company_backlog(kafka_bootstrap, per_company=4)
	ref_of = {name: ref for ref, name in names.items()}
	claims: list[dict] = []
	claim = bundles.claim

	def recording_claim(db, owner, until, utc, limit, after=None, now=None):
		committed = dict(db.sql(f"SELECT name, delivered_through FROM `{CURSOR_TABLE}`"))
		got = claim(db, owner, until, utc, limit, after, now)
		claims.append(
			{
				"committed": committed,
				"bundles": [(b.cursor, b.name) for b in got],
				"events": [ref_of[n] for b in got for n in refs_in(b.messages)],
			}
		)
		return got

	monkeypatch.setattr(bundles, "claim", recording_claim)
	producers: list[InjectingProducer] = []

	def factory():
		producers.append(InjectingProducer(producer_conf(kafka_bootstrap), failing=None))
		return producers[-1]

	stats = run_drainer(mariadb, redis_url, factory, batch_size=2)
	assert [c["events"] for c in claims[:3]] == [["A1", "G1"], ["A2", "G2"], ["A3", "G3"]]
	# the second claim read cursors that did not have batch 1 yet (its receipt was not committed)
	assert all(claims[1]["committed"].get(cursor, 0) < name for cursor, name in claims[0]["bundles"])
	bundles_claimed = [name for c in claims for _, name in c["bundles"]]
	assert len(bundles_claimed) == len(set(bundles_claimed)) == 8
	produced = [ref_of[n] for p in producers for batch in p.started for n in batch]
	assert sorted(produced) == sorted(names)  # each once
	assert stats.sent == 8 and all_delivered()


def test_a_failure_is_not_recorded_on_a_company_another_drainer_took_over(
	site, mariadb, redis_url, kafka_bootstrap
):
	"""A drainer whose lease on Acme expired, and whose batch failed on Acme afterwards,
	checks that it still leases Acme before recording the failure: the newer owner's retry
	state on Acme's cursor and its outcome on Acme's events stand. (The late drainer's
	delivered events still count: a cursor only ever moves forward.)"""
	names = two_company_backlog(kafka_bootstrap, per_company=2)
	acme, globex = COMPANIES[0], COMPANIES[1]
	frappe.db.commit()  # ends this connection's transaction: the drainers read on their own
	a1_bundle = frappe.db.sql(f"SELECT MIN(name) FROM `{BUNDLE_TABLE}` WHERE company = %s", (acme,))[0][0]
	intruder = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})
	retry_at = frappe.db.sql("SELECT UTC_TIMESTAMP()")[0][0] + timedelta(minutes=5)  # the database's clock

	def take_over_acme():
		"""The new owner delivered A1 and failed A2 twice."""
		intruder.sql(
			f"UPDATE `{CURSOR_TABLE}` SET lease_owner = 'intruder', lease_expires_at = %s, delivered_through = %s, "
			"attempts = 2, next_attempt_at = %s, last_error = 'the new owner''s error' WHERE name = %s",
			(retry_at, a1_bundle, retry_at, acme),
		)
		intruder.sql(
			"UPDATE `tabStreaming Event Log` SET status = 'Failed', attempts = 2, next_attempt_at = %s, "
			"last_error = 'the new owner''s error' WHERE name = %s",
			(retry_at, names["A2"]),
		)
		intruder.commit()

	producers: list[SlowFirstFinish] = []

	def factory():
		producers.append(
			SlowFirstFinish(producer_conf(kafka_bootstrap), during=take_over_acme, failing=names["A2"])
		)
		return producers[-1]

	try:
		run_drainer(mariadb, redis_url, factory, batch_size=4)
	finally:
		intruder.close()
	assert producers[0].injected  # A2's delivery failed in the late drainer
	ref_of = {name: ref for ref, name in names.items()}
	assert [[ref_of[n] for n in batch] for batch in producers[0].started] == [["A1", "G1", "A2", "G2"]]
	cursor = cursors()[acme]
	assert (cursor["delivered_through"], cursor["attempts"], cursor["last_error"]) == (
		a1_bundle,
		2,
		"the new owner's error",
	)
	assert (cursor["next_attempt_at"], cursor["lease_owner"]) == (retry_at, "intruder")
	by_ref = {ref_of[r.name]: r for r in rows()}
	assert (by_ref["A2"].status, by_ref["A2"].attempts, by_ref["A2"].last_error) == (
		Status.FAILED,
		2,
		"the new owner's error",
	)
	assert {ref: r.status for ref, r in by_ref.items() if ref != "A2"} == dict.fromkeys(
		["A1", "G1", "G2"], Status.SENT
	)
	assert cursors()[globex]["lease_owner"] is None  # its own lease given back when it left


class QueryDeadlockError(Exception):
	"""What `frappe.db.sql` raises for a deadlock, from PyMySQL's error."""


def test_a_claim_rolled_back_as_a_deadlock_victim_is_claimed_again(
	site, mariadb, redis_url, kafka_bootstrap, monkeypatch
):
	"""A claim writes cursor rows that others (a requeue, the sweeper, another drainer's
	record) may write at the same time in their own order, so MariaDB may roll the claim
	back as a deadlock's victim: the drainer claims again instead of failing."""
	names = two_company_backlog(kafka_bootstrap)
	ref_of = {name: ref for ref, name in names.items()}
	claim, calls = bundles.claim, []

	def losing_claim(db, owner, until, utc, limit, after=None, now=None):
		got = claim(db, owner, until, utc, limit, after, now)
		calls.append([ref_of[n] for b in got for n in refs_in(b.messages)])
		if len(calls) == 2:  # the second claim lost (its leases were written: rolled back)
			error = pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock")
			raise QueryDeadlockError(error) from error
		return got

	monkeypatch.setattr(bundles, "claim", losing_claim)
	producers: list[InjectingProducer] = []

	def factory():
		producers.append(InjectingProducer(producer_conf(kafka_bootstrap), failing=None))
		return producers[-1]

	stats = run_drainer(mariadb, redis_url, factory, batch_size=2)
	assert calls[:3] == [["A1", "G1"], ["A2", "G2"], ["A2", "G2"]]  # claimed again at once
	assert [[ref_of[n] for n in batch] for batch in producers[0].started] == [
		["A1", "G1"],
		["A2", "G2"],
		["A3", "G3"],
	]
	assert stats.sent == 6 and all_delivered()


NOW = datetime(2026, 11, 23, 10, 0, 0)


def claimed_by_d1() -> list[bundles.Claimed]:
	batch = bundles.claim(frappe.db, "d1", NOW + timedelta(minutes=5), NOW, 100)
	frappe.db.commit()  # the claim's transaction ends, as the drainer commits it
	return batch


def delivered_in_full(batch: list[bundles.Claimed]) -> tuple[InFlight, BatchOutcome]:
	"""`batch` in flight, and its outcome when every event was delivered (offsets 0, 1, ...)."""
	events = [refs_in(b.messages) for b in batch]
	sent = [Published(n, 0, i) for i, n in enumerate(n for refs in events for n in refs)]
	return InFlight(batch, events, {}, None), BatchOutcome(sent, {b.cursor: b.name for b in batch})


def receipts() -> list:
	frappe.db.commit()  # a fresh snapshot: receipts the drainer's connection committed
	return frappe.db.sql(f"SELECT name, events, positions FROM `{RECEIPT_TABLE}` ORDER BY name", as_dict=True)


def test_a_failed_record_keeps_neither_the_receipt_nor_the_cursor_move(site, mariadb, redis_url):
	"""Receipt and cursor move are one transaction: when the record fails (not a deadlock:
	not tried again), neither is kept, so the bundle is delivered again (at least once) and
	its events never show Sent."""
	commit_transaction([event("f1", COMPANIES[0], "erpnext.record")])
	in_flight, batch = delivered_in_full(claimed_by_d1())
	drainer = make_drainer(mariadb, redis_url, lambda: None)
	moves: list[str] = []
	sql = drainer.db.sql

	def failing_sql(query, *args, **kwargs):
		if CURSOR_TABLE in query:
			moves.append(query)
			raise RuntimeError("the database went away")
		return sql(query, *args, **kwargs)

	try:
		drainer.prepare()
		drainer.db.sql = failing_sql
		with pytest.raises(RuntimeError, match="went away"):
			drainer._record(in_flight, batch, [])
	finally:
		drainer.db.close()
	assert len(moves) == 1
	assert not receipts()
	cursor = cursors()[COMPANIES[0]]
	assert (cursor["delivered_through"], cursor["lease_owner"]) == (0, "d1")
	assert bundles.deliverable(frappe.db, NOW + timedelta(minutes=10))  # again, once the lease is gone
	(row,) = rows()
	assert row.status == Status.QUEUED


def test_a_record_rolled_back_as_a_deadlock_victim_is_written_again(site, mariadb, redis_url, monkeypatch):
	"""Another transaction (a requeue, the sweeper, another drainer) writes the cursors the
	record is moving, in its own order: when MariaDB rolls the record back as the deadlock's
	victim, the drainer writes it again (one receipt) instead of failing, which would send
	the batch again."""
	topic = "erpnext.record"
	commit_transaction([event("d1", COMPANIES[0], topic), event("d2", COMPANIES[1], topic)])
	in_flight, batch = delivered_in_full(claimed_by_d1())
	frappe.db.sql(  # more cursors for the other transaction to write first: the heavier one wins
		f"INSERT INTO `{CURSOR_TABLE}` (name, creation, modified, modified_by, owner, docstatus, idx, company, "
		"delivered_through, attempts) VALUES " + ", ".join(["(%s, %s, %s, 'x', 'x', 0, 0, %s, 0, 0)"] * 10),
		[v for i in range(10) for v in (f"other {i}", NOW, NOW, f"other {i}")],
	)
	frappe.db.commit()  # the extra cursors are visible to the drainer's connection
	acme, globex = COMPANIES[0], COMPANIES[1]
	params = {k: v for k, v in mariadb.items() if k != "tables"}
	other = StandinDatabase(**params)
	drainer = make_drainer(mariadb, redis_url, lambda: None)
	record_delivered, moves = bundles.record_delivered, []

	def counting(db, sent, through, now):
		moves.append(sorted(through))
		record_delivered(db, sent, through, now)

	monkeypatch.setattr(bundles, "record_delivered", counting)
	errors: list[BaseException] = []

	def record():
		try:
			drainer._record(in_flight, batch, [])
		except BaseException as e:
			errors.append(e)

	recording = threading.Thread(target=record)
	try:
		drainer.prepare()
		lease = f"UPDATE `{CURSOR_TABLE}` SET lease_expires_at = %s WHERE name = %s"
		for name in [globex, *(f"other {i}" for i in range(10))]:
			other.sql(lease, (NOW + timedelta(minutes=9), name))
		recording.start()
		waits = "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS"
		deadline = time.monotonic() + 10
		while (
			not frappe.db.sql(waits)[0][0] and time.monotonic() < deadline
		):  # Acme written, waits for Globex
			time.sleep(0.2)  # InnoDB refreshes these tables at most every 0.1 s of not being read
		assert frappe.db.sql(waits)[0][0], "the record waits for the other transaction's lock"
		other.sql(lease, (NOW + timedelta(minutes=9), acme))  # the deadlock: the record is rolled back
		other.commit()
		recording.join(10)
	finally:
		other.close()
		recording.join(10)
		drainer.db.close()
	assert not errors  # written again, no error
	assert moves == [[acme, globex], [acme, globex]]  # rolled back and written again
	assert [r.events for r in receipts()] == [2]
	assert {c: r["delivered_through"] for c, r in cursors().items() if c in (acme, globex)} == batch.through


def test_a_batch_lost_with_its_producer_is_retried_at_once_with_the_new_one_then_backs_off(
	site, mariadb, redis_url, kafka_bootstrap
):
	"""After an outage the idempotent producer may come back fenced: its batch fails through
	no fault of its events, and waiting out the backoff would only delay the backlog (P6 in
	benchmarks/RESULTS.md). The first such retry is at once; a producer lost again backs off."""
	topic = new_topic(kafka_bootstrap)
	records = [event(f"p{i}", COMPANIES[i % 3], topic) for i in range(6)]
	commit_transaction(records)
	conf = producer_conf(kafka_bootstrap)
	made: list[KafkaProducer] = []
	lost = {"instances": 1}

	def factory():
		producer = KafkaProducer(conf)
		if len(made) < lost["instances"]:
			producer.on_error(KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, "injected", fatal=True))
		made.append(producer)
		return producer

	drainer = make_drainer(mariadb, redis_url, factory)
	drainer.policy = RetryPolicy(base_seconds=60, cap_seconds=60, max_attempts=5)
	stats = drainer.run()
	drainer.db.close()
	assert (stats.producers, stats.failed, stats.sent) == (2, 6, 6)  # within the run: no 60 s wait
	assert {(r.status, r.attempts) for r in rows()} == {(Status.SENT, 1)}

	records = [event(f"q{i}", COMPANIES[i % 3], topic) for i in range(6)]
	commit_transaction(records)
	made.clear()
	lost["instances"] = 2
	drainer = make_drainer(mariadb, redis_url, factory)
	drainer.policy = RetryPolicy(base_seconds=60, cap_seconds=60, max_attempts=5)
	started = frappe.db.sql("SELECT UTC_TIMESTAMP(6)")[0][0]  # retry times are the database's UTC
	stats = drainer.run()
	drainer.db.close()
	assert (stats.producers, stats.sent) == (2, 0)  # retried at once, lost again: now it waits
	waiting = [r for r in rows() if r.event_id in {e.event_id for e in records}]
	assert {(r.status, r.attempts) for r in waiting} == {(Status.FAILED, 2)}
	due = [r[0] for r in frappe.db.sql(f"SELECT next_attempt_at FROM `{CURSOR_TABLE}`")]
	assert len(due) == 3 and all(d >= started + timedelta(seconds=29) for d in due)


class SteppedClock(SystemClock):
	"""The wall clock, with a monotonic clock the test moves."""

	def __init__(self, at: float):
		super().__init__()
		self.at = at

	def monotonic(self) -> float:
		return self.at


def unsettled(drainer: Drainer) -> int:
	"""Events delivered and not settled, read on the drainer's connection; the read is
	committed so the drainer's next cycle starts a transaction of its own."""
	count = unsettled_on(drainer.db)
	drainer.db.commit()
	return count


def test_under_sustained_load_receipts_settle_a_while_after_the_first_one_left_unsettled(
	site, mariadb, redis_url, kafka_bootstrap
):
	"""A drainer busy for long (or waiting out an outage) does not settle at the first batch
	it delivers afterwards: the backlog goes first (P6 in benchmarks/RESULTS.md); receipts
	settle `SETTLE_AFTER_SECONDS` after the first one left unsettled, or when it is idle."""
	topic = new_topic(kafka_bootstrap)
	conf = producer_conf(kafka_bootstrap)
	drainer = make_drainer(mariadb, redis_url, lambda: KafkaProducer(conf))
	drainer.clock = clock = SteppedClock(1000.0)  # long after the drainer started
	try:
		commit_transaction([event(f"s{i}", COMPANIES[i % 3], topic) for i in range(3)])
		assert drainer.cycle()  # claims and starts the batch
		clock.at += 2 * bundles.SETTLE_AFTER_SECONDS  # e.g. its flush waited out an outage
		commit_transaction([event(f"t{i}", COMPANIES[i % 3], topic) for i in range(3)])
		assert drainer.cycle()  # its receipt; the next batch started
		assert unsettled(drainer) == 3
		clock.at += bundles.SETTLE_AFTER_SECONDS - 1
		commit_transaction([event(f"u{i}", COMPANIES[i % 3], topic) for i in range(3)])
		assert drainer.cycle()
		assert unsettled(drainer) == 6
		clock.at += 1
		assert drainer.cycle()  # the last batch's receipt, then the settle that was due
		assert unsettled(drainer) == 0
		assert {r.status for r in rows()} == {Status.SENT}
	finally:
		drainer.publisher.close(drainer.config.flush_timeout_seconds)
		drainer.db.close()
