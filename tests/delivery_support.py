"""Helpers for the delivery tests: events, user transactions, workers, topics, consumers.

`CODEC` encodes the test payloads with the shipped GL Entry event schema, so consumers in
the tests decode what they read with the schemas the app ships.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import fastavro
import frappe
import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from frappe import standin
from frappe.utils.background_jobs import generate_qname, get_redis_conn
from harness.worker import kill_tree, start_worker
from rq import Queue

from erpnext_streaming.constants import CURSOR_TABLE, EVENT_LOG_TABLE, RECEIPT_TABLE, SETTINGS_DOCTYPE, Status
from erpnext_streaming.delivery import bundles, jobs, signals, sweeper, wake
from erpnext_streaming.emitters.handler import message_context
from erpnext_streaming.outbox.records import OutboxRecord
from erpnext_streaming.outbox.write import write as write_outbox


class _AvroCodec:
	"""Schemaless Avro bytes of one record schema; `name`, `version`, `fingerprint`."""

	name: str
	version: int
	fingerprint: str
	parsed: dict
	reference_field: str

	def write(self, record: dict) -> bytes:
		out = io.BytesIO()
		fastavro.schemaless_writer(out, self.parsed, record)
		return out.getvalue()

	def reference(self, value: bytes) -> str:
		"""The document name an encoded event carries."""
		return fastavro.schemaless_reader(io.BytesIO(value), self.parsed, self.parsed)[self.reference_field]


class ShippedSchemaCodec(_AvroCodec):
	"""Events encoded with a shipped event schema (GL Entry by default)."""

	reference_field = "name"

	def __init__(self, doctype: str = "GL Entry"):
		from erpnext_streaming.schemas import get_event_schema

		schema = get_event_schema(doctype)
		self.doctype, self.parsed = doctype, schema.parsed
		self.name, self.version, self.fingerprint = schema.name, schema.version, schema.fingerprint
		self.document_fields = [f["name"] for f in schema.document_schema["fields"]]

	def encode(self, event_id: str, company: str, reference: str, filler: bytes = b"") -> bytes:
		moment = datetime(2026, 11, 23, 9, 30, 15)
		document = dict.fromkeys(self.document_fields)
		document.update(name=reference, docstatus=1, company=company, is_cancelled=False)
		document["remarks"] = filler.decode("latin-1") or None
		return self.write(
			{
				"event_id": event_id, "event_type": "posted", "doctype": self.doctype, "name": reference,
				"company": company, "site": "test.local", "docstatus": 1, "event_time": moment,
				"emitted_at": moment, "modified": moment, "schema_name": self.name,
				"schema_version": self.version, "voucher_type": None, "voucher_no": None,
				"voucher_detail_no": None, "document": document,
			}
		)  # fmt: skip


CODEC = ShippedSchemaCodec()  # events encoded with the shipped GL Entry schema

# 6 partitions: Java murmur2 puts these on partitions 2, 5 and 3
COMPANIES = ("Acme Corp", "Globex Ltd", "Stark Industries")
PARTITIONS = 6


def event(
	ref: str, company: str, topic: str, filler: bytes = b"", status: str = Status.QUEUED, error: str = ""
):
	event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"test/{topic}/{ref}"))
	payload = CODEC.encode(event_id, company, ref, filler)
	return OutboxRecord(
		event_id=event_id, event_type="posted", reference_doctype="GL Entry", reference_name=ref,
		company=company, event_time=datetime(2026, 11, 23, 9, 30, 15, 250000), topic=topic,
		message_key=company, schema_name=CODEC.name, schema_version=CODEC.version,
		schema_fingerprint=CODEC.fingerprint, payload=payload, status=status, last_error=error,
	)  # fmt: skip


def commit_transaction(records: list[OutboxRecord]) -> None:
	"""A user's transaction as the capture flush runs it: the outbox write in before_commit,
	the wake-up in after_commit (emitters/handler.py `flush`)."""

	def flush():
		write_outbox(frappe.db, records, datetime.now(), context=message_context())
		frappe.db.after_commit.add(wake.after_commit)

	frappe.db.before_commit.add(flush)
	frappe.db.commit()


def configure(bootstrap: str, dead_letter_topic: str, **overrides) -> None:
	"""Streaming Settings for the site, plus drainer tuning in site config."""
	properties = {"linger.ms": "5", "message.timeout.ms": "3000", **overrides.pop("properties", {})}
	standin.set_single(
		SETTINGS_DOCTYPE,
		{
			"enabled": 1,
			"bootstrap_servers": bootstrap,
			"dead_letter_topic": dead_letter_topic,
			"batch_size": overrides.pop("batch_size", 50),
			"max_attempts": overrides.pop("max_attempts", 50),
			"backoff_base_seconds": overrides.pop("backoff_base_seconds", 1),
			"backoff_cap_seconds": overrides.pop("backoff_cap_seconds", 2),
			"producer_properties": [{"property": k, "value": v} for k, v in properties.items()],
			**overrides.pop("settings", {}),
		},
	)
	frappe.local.conf.update(
		{
			"erpnext_streaming_lease_seconds": overrides.pop("lease_seconds", 1),
			"erpnext_streaming_drainer_idle_exit_seconds": overrides.pop("idle_exit_seconds", 2),
			"erpnext_streaming_drainer_poll_seconds": overrides.pop("poll_seconds", 0.5),
			"time_zone": "Asia/Kolkata",
		}
	)
	assert not overrides, overrides


def create_topics(bootstrap: str, *topics: tuple[str, int], replication: int = 1) -> None:
	admin = AdminClient({"bootstrap.servers": bootstrap})
	new = [NewTopic(t, num_partitions=n, replication_factor=replication) for t, n in topics]
	for future in admin.create_topics(new).values():
		future.result(15)


def new_topic(bootstrap: str, partitions: int = PARTITIONS, replication: int = 1) -> str:
	topic = f"erpnext.test-{uuid.uuid4().hex[:8]}"
	create_topics(bootstrap, (topic, partitions), replication=replication)
	return topic


@dataclass
class Consumed:
	topic: str
	partition: int
	offset: int
	key: bytes | None
	value: bytes | None
	headers: dict[str, str]


def consume(
	bootstrap: str,
	topic: str,
	expect: int,
	timeout: float = 30,
	settle: float = 1.0,
	config: dict | None = None,
) -> list[Consumed]:
	"""Every message of `topic` from the beginning: waits for at least `expect`, then
	`settle` seconds more so extra copies (duplicates) are counted too. `config`: more
	client properties (security)."""
	consumer = Consumer(
		{
			"bootstrap.servers": bootstrap,
			"group.id": f"test-{uuid.uuid4().hex}",
			"enable.auto.commit": False,
			**(config or {}),
		}
	)
	try:
		partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
		consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
		got: list[Consumed] = []
		deadline, quiet_until = time.monotonic() + timeout, None
		while time.monotonic() < deadline:
			message = consumer.poll(0.2)
			if message is not None and message.error() is None:
				headers = {k: v.decode() for k, v in message.headers() or []}
				got.append(
					Consumed(
						message.topic(),
						message.partition(),
						message.offset(),
						message.key(),
						message.value(),
						headers,
					)
				)
			if len(got) >= expect:
				quiet_until = quiet_until or time.monotonic() + settle
				if time.monotonic() >= quiet_until:
					break
		return got
	finally:
		consumer.close()


def statuses() -> dict[str, int]:
	frappe.db.commit()  # a fresh snapshot
	return dict(frappe.db.sql(f"SELECT status, COUNT(*) FROM `{EVENT_LOG_TABLE}` GROUP BY status"))


def rows() -> list:
	frappe.db.commit()
	return frappe.db.sql(
		f"SELECT name, event_id, company, company_sequence, status, attempts, kafka_partition, kafka_offset, "
		f"last_error, lease_owner, dead_lettered_at, topic FROM `{EVENT_LOG_TABLE}` ORDER BY name",
		as_dict=True,
	)


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.2):
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		result = predicate()
		if result:
			return result
		time.sleep(interval)
	errors = sorted({(r.status, r.attempts, (r.last_error or "")[:160]) for r in rows() if r.last_error})
	raise AssertionError(f"{what}: not within {timeout} s; Event Log: {statuses()}; errors: {errors}")


def unsettled(db) -> int:
	"""Events delivered whose Event Log rows are not marked Sent yet."""
	return int(db.sql(f"SELECT COALESCE(SUM(`events`), 0) FROM `{RECEIPT_TABLE}`")[0][0] or 0)


def all_delivered() -> bool:
	"""Nothing left to deliver, every delivery settled in the Event Log, no row leased for a
	dead-letter copy (a running drainer keeps its companies' cursors leased)."""
	frappe.db.commit()
	return (
		not sweeper.has_pending_work(frappe.db, datetime.max)
		and not unsettled(frappe.db)
		and not frappe.db.sql(
			f"SELECT 1 FROM `{EVENT_LOG_TABLE}` WHERE status IN ('Queued', 'Failed') OR lease_owner IS NOT NULL "
			"LIMIT 1"
		)
	)


def cursor_leases() -> dict[str, str]:
	"""{company cursor: the drainer leasing it}"""
	frappe.db.commit()
	return dict(
		frappe.db.sql(f"SELECT name, lease_owner FROM `{CURSOR_TABLE}` WHERE lease_owner IS NOT NULL")
	)


def cursors() -> dict[str, dict]:
	"""{company cursor: its row (delivered_through, retry state, lease)}"""
	frappe.db.commit()
	return {
		r["name"]: r
		for r in frappe.db.sql(
			f"SELECT name, delivered_through, attempts, next_attempt_at, last_error, lease_owner, lease_expires_at "
			f"FROM `{CURSOR_TABLE}`",
			as_dict=True,
		)
	}


def drainer_stats() -> dict[str, str]:
	client = redis.Redis.from_url(frappe.conf.redis_queue, decode_responses=True)
	return client.hgetall(signals.stats_key(frappe.local.site))


def drainer_running() -> bool:
	client = redis.Redis.from_url(frappe.conf.redis_queue)
	return signals.drainer_running(client, frappe.local.site)


def long_queue() -> Queue:
	return Queue(generate_qname("long"), connection=get_redis_conn())


def clear_long_queue() -> None:
	queue = long_queue()
	queue.empty()
	for registry in (queue.started_job_registry, queue.failed_job_registry, queue.finished_job_registry):
		for job_id in registry.get_job_ids():
			registry.remove(job_id, delete_job=True)


class Workers:
	"""Real forking `rq worker` processes on the site's long queue, stopped by PID."""

	def __init__(self):
		self.processes: list[subprocess.Popen] = []

	def start(self, count: int = 1, redis_url: str | None = None) -> list[subprocess.Popen]:
		url = redis_url or frappe.conf.redis_queue
		started = [start_worker(url, [generate_qname("long")], burst=False) for _ in range(count)]
		self.processes += started
		return started

	def kill(self, process: subprocess.Popen) -> list[int]:
		"""SIGKILL a worker and its work horse at once; returns the horse PIDs killed."""
		return kill_tree(process)

	def stop_all(self) -> None:
		for process in self.processes:
			if process.poll() is None:
				self.kill(process)


def worker_pool():
	"""The `workers` fixture (tests/conftest.py): a clean long queue before and after."""
	clear_long_queue()
	pool = Workers()
	try:
		yield pool
	finally:
		pool.stop_all()
		clear_long_queue()
		wake.breaker.success()
		wake._clients.clear()


def by_event_id(messages: Iterable[Consumed]) -> dict[str, list[Consumed]]:
	grouped: dict[str, list[Consumed]] = {}
	for message in messages:
		grouped.setdefault(message.headers["ce_id"], []).append(message)
	return grouped


def murmur2(data: bytes) -> int:
	"""Kafka's Java `Utils.murmur2` (seed 0x9747b28c), written out independently."""
	m, r = 0x5BD1E995, 24
	length = len(data)
	h = (0x9747B28C ^ length) & 0xFFFFFFFF
	for i in range(length // 4):
		k = data[4 * i] | data[4 * i + 1] << 8 | data[4 * i + 2] << 16 | data[4 * i + 3] << 24
		k = (k * m) & 0xFFFFFFFF
		k ^= k >> r
		k = (k * m) & 0xFFFFFFFF
		h = (h * m) & 0xFFFFFFFF
		h ^= k
	tail, rest = length & ~3, length % 4
	if rest == 3:
		h ^= data[tail + 2] << 16
	if rest >= 2:
		h ^= data[tail + 1] << 8
	if rest >= 1:
		h ^= data[tail]
		h = (h * m) & 0xFFFFFFFF
	h ^= h >> 13
	h = (h * m) & 0xFFFFFFFF
	h ^= h >> 15
	return h - (1 << 32) if h & 0x80000000 else h  # Java int


def java_partition(key: bytes, partitions: int) -> int:
	"""`Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions` (Kafka's default partitioner)."""
	return (murmur2(key) & 0x7FFFFFFF) % partitions


# -- load, outcomes and order (the broker-failure tests) ------------------------------------


def transactions(topic: str, start: int, count: int) -> list:
	written = []
	for i in range(start, start + count):
		batch = [event(f"T{i}-{company[:4]}", company, topic) for company in COMPANIES[: 1 + i % 3]]
		commit_transaction(batch)
		written += batch
	return written


def sweeping(predicate, results: list | None = None):
	"""The scheduler's cron: run the sweeper, then check."""

	def check():
		outcome = jobs.sweep()
		if results is not None:
			results.append(outcome["drainer"])
		return predicate()

	return check


def report_duplicates(got, log) -> dict[str, int]:
	copies = by_event_id(got)
	duplicates = {event_id: len(c) - 1 for event_id, c in copies.items() if len(c) > 1}
	print(f"\n{len(got)} messages for {len(copies)} events; {sum(duplicates.values())} duplicates")
	for event_id, extra in sorted(duplicates.items(), key=lambda kv: log[kv[0]].name):
		row = log[event_id]
		print(
			f"  duplicate: Event Log {row.name} {row.company} #{row.company_sequence} x{extra + 1} ({event_id})"
		)
	return duplicates


def assert_company_order(got) -> None:
	"""Per company, first copies appear in sequence order, in one partition."""
	seen: dict[str, set] = defaultdict(set)
	order: dict[str, list[int]] = defaultdict(list)
	for message in sorted(got, key=lambda m: (m.partition, m.offset)):
		company = message.key.decode()
		seen[company].add(message.partition)
		if message.headers["ce_id"] not in {m for m in order.get(company + "#ids", [])}:
			order[company + "#ids"].append(message.headers["ce_id"])
			order[company].append(int(message.headers["es_company_sequence"]))
	for company in COMPANIES:
		assert len(seen[company]) == 1, company
		assert order[company] == sorted(order[company]) == list(range(1, len(order[company]) + 1)), company
