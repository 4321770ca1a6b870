"""The drainer core on a real broker, MariaDB and Redis, run in this process: fatal
producer errors, bounded flush, heartbeat and exit rules."""

from __future__ import annotations

import os
import signal
import time
from datetime import datetime, timedelta

import frappe
import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from delivery_support import (
	COMPANIES,
	all_delivered,
	by_event_id,
	commit_transaction,
	consume,
	event,
	new_topic,
	rows,
)
from frappe.standin import StandinDatabase
from harness.services import start_tansu

from erpnext_streaming import kafka_config, outbox
from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import drainer as drainer_module
from erpnext_streaming.delivery import signals
from erpnext_streaming.delivery.drainer import Drainer, DrainerConfig, SystemClock
from erpnext_streaming.delivery.policy import RetryPolicy, classify
from erpnext_streaming.delivery.producer import Delivery, KafkaProducer, OutgoingMessage
from erpnext_streaming.delivery.state import Outcome
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
	bootstrap, broker = start_tansu()
	try:
		producer = KafkaProducer(producer_conf(bootstrap, **{"message.timeout.ms": "60000"}))
		warm = producer.send([OutgoingMessage("warm", "flush-test", b"k", b"v", [])], 15)
		assert warm.deliveries["warm"].error is None
		os.kill(broker.process.pid, signal.SIGSTOP)
		try:
			batch = [OutgoingMessage(i, "flush-test", b"k", b"v", []) for i in range(3)]
			result = producer.send(batch, timeout=1.0)
		finally:
			os.kill(broker.process.pid, signal.SIGCONT)
		assert result.discard and result.fatal is None
		assert set(result.deliveries) == {0, 1, 2}
		for delivery in result.deliveries.values():
			assert delivery.error is not None and classify(delivery.error).outcome is Outcome.RETRIABLE
		producer.close(1)
	finally:
		broker.stop()


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
	company after its rows in flight, and when batch n leaves a company with a Failed row,
	that company's rows of batch n+1 are given back, not produced before the retry."""
	topic = new_topic(kafka_bootstrap)
	acme, globex = COMPANIES[0], COMPANIES[1]
	records = [event(f"{c[0]}{i}", c, topic) for i in range(1, 7) for c in (acme, globex)]
	commit_transaction(records)
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
	# rows were given back and only Globex went on
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
	commit_transaction(
		[event(f"{c[0]}{i}", c, topic) for i in range(1, per_company + 1) for c in (acme, globex)]
	)
	return {r.reference_name: r.name for r in rows_with_refs()}


def test_a_batch_claimed_during_a_slow_finish_is_leased_again_before_it_is_produced(
	site, mariadb, redis_url, kafka_bootstrap, monkeypatch
):
	names = two_company_backlog(kafka_bootstrap)
	monkeypatch.setattr(drainer_module, "RENEW_AFTER_SECONDS", 0.1)
	renewed: list[list[int]] = []
	renew = outbox.renew_leases
	monkeypatch.setattr(
		outbox,
		"renew_leases",
		lambda db, owner, batch, until: renewed.append(list(batch)) or renew(db, owner, batch, until),
	)
	producers: list[SlowFirstFinish] = []

	def factory():
		producers.append(SlowFirstFinish(producer_conf(kafka_bootstrap), during=lambda: time.sleep(0.3)))
		return producers[-1]

	stats = run_drainer(mariadb, redis_url, factory, batch_size=2)
	assert renewed[0] == [names["A2"], names["G2"]]  # batch 2, claimed while batch 1 was finishing
	assert stats.sent == 6 and all_delivered()


def test_a_batch_that_lost_a_lease_while_waiting_is_given_back_not_produced(
	site, mariadb, redis_url, kafka_bootstrap, monkeypatch
):
	names = two_company_backlog(kafka_bootstrap)
	monkeypatch.setattr(drainer_module, "RENEW_AFTER_SECONDS", 0.1)
	intruder = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})

	def steal_g2():  # another drainer took G2 after its lease expired
		intruder.sql(
			"UPDATE `tabStreaming Event Log` SET lease_owner = 'intruder', lease_expires_at = %s WHERE name = %s",
			(datetime.now() + timedelta(seconds=1), names["G2"]),
		)
		intruder.commit()
		time.sleep(0.2)

	producers: list[SlowFirstFinish] = []

	def factory():
		producers.append(SlowFirstFinish(producer_conf(kafka_bootstrap), during=steal_g2))
		return producers[-1]

	try:
		stats = run_drainer(mariadb, redis_url, factory, batch_size=2, idle_exit_seconds=3)
	finally:
		intruder.close()
	ref_of = {name: ref for ref, name in names.items()}
	started = [[ref_of[n] for n in batch] for p in producers for batch in p.started]
	assert started[0] == ["A1", "G1"] and ["A2", "G2"] not in started  # batch 2 was given back whole
	assert stats.sent == 6 and all_delivered()


def test_an_error_after_the_claim_gives_the_claimed_rows_back(site, mariadb, redis_url, kafka_bootstrap):
	names = two_company_backlog(kafka_bootstrap)

	def fail():
		raise RuntimeError("the database went away")

	drainer = make_drainer(
		mariadb, redis_url, lambda: SlowFirstFinish(producer_conf(kafka_bootstrap), during=fail), batch_size=2
	)
	with pytest.raises(RuntimeError, match="went away"):
		drainer.run()
	drainer.db.close()
	leases = {r.name: r.lease_owner for r in rows()}
	assert leases[names["A1"]] and leases[names["G1"]]  # batch 1 was in flight: its leases expire
	assert leases[names["A2"]] is None and leases[names["G2"]] is None  # batch 2 was given back


def run_drainer(mariadb, redis_url, factory, **config):
	drainer = make_drainer(mariadb, redis_url, factory, **config)
	try:
		return drainer.run()
	finally:
		drainer.db.close()


@pytest.mark.parametrize("plain_every, continued", [(30.0, True), (0.0, False)])
def test_now_and_then_a_round_claims_without_continuing_after_the_batch_in_flight(
	site, mariadb, redis_url, kafka_bootstrap, monkeypatch, plain_every, continued
):
	"""So a row requeued behind the rows in flight is seen while its company has a backlog."""
	two_company_backlog(kafka_bootstrap)
	monkeypatch.setattr(drainer_module, "PLAIN_CLAIM_SECONDS", plain_every)
	afters: list = []
	claim = outbox.claim
	monkeypatch.setattr(
		outbox,
		"claim",
		lambda db, lease, now, limit, after=None: afters.append(after) or claim(db, lease, now, limit, after),
	)
	stats = run_drainer(
		mariadb, redis_url, lambda: KafkaProducer(producer_conf(kafka_bootstrap)), batch_size=2
	)
	assert stats.sent == 6 and all_delivered()
	assert afters[0] is None and (afters[1] is not None) is continued


def test_a_failure_is_not_recorded_on_a_company_another_drainer_took_over(
	site, mariadb, redis_url, kafka_bootstrap
):
	"""Only each company's first row carries the lease: before recording Failed rows the
	drainer checks that it still leases their company, so a drainer whose lease expired
	never overwrites rows a newer owner is delivering."""
	names = two_company_backlog(kafka_bootstrap, per_company=2)
	intruder = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})

	def take_over_acme():
		intruder.sql(
			"UPDATE `tabStreaming Event Log` SET lease_owner = 'intruder', lease_expires_at = %s WHERE name = %s",
			(datetime.now() + timedelta(minutes=5), names["A1"]),
		)
		intruder.commit()

	producers: list[SlowFirstFinish] = []

	def factory():
		producers.append(
			SlowFirstFinish(producer_conf(kafka_bootstrap), during=take_over_acme, failing=names["A2"])
		)
		return producers[-1]

	try:
		stats = run_drainer(mariadb, redis_url, factory, batch_size=4)
	finally:
		intruder.close()
	assert producers[0].injected and stats.failed == 0  # A2 failed, and nothing was recorded:
	a2 = next(r for r in rows() if r.name == names["A2"])
	assert (a2.attempts, a2.last_error) == (0, "")  # the row was left to Acme's new owner
	ref_of = {name: ref for ref, name in names.items()}
	started = [[ref_of[n] for n in batch] for batch in producers[0].started]
	assert started == [["A1", "G1", "A2", "G2"], ["A2"]]
	assert {r.status for r in rows()} == {Status.SENT}
