"""The sandbox's delivery path: the app's framework-free drainer in forking RQ workers.

In a bench, `erpnext_streaming.delivery.jobs.drain` (Frappe glue) builds a `Drainer` from
Streaming Settings and runs it on `frappe.db`. Here `drain(spec)` builds the same
`Drainer` from a plain dict and runs it on a PyMySQL connection (`Database`), in a real
`rq worker` work horse; `wake(...)` is the after-commit path (a Redis wake-up token, and
an enqueue when no drainer holds the heartbeat) and also serves as the sweeper.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pymysql

from erpnext_streaming import kafka_config
from erpnext_streaming.delivery import framing, signals
from erpnext_streaming.delivery.drainer import Drainer
from erpnext_streaming.delivery.environment import DrainerConfig, SystemClock
from erpnext_streaming.delivery.policy import RetryPolicy
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.settings import StreamingConfig

DRAIN = "sandbox.delivery.drain"
FRAPPE_GC_THRESHOLDS = (7000, 20, 20)  # Python's defaults (700, 10, 10) as Frappe tunes them


class Database:
	"""The part of `frappe.db` the outbox and drainer use, on PyMySQL (Frappe's driver)."""

	def __init__(self, **params: Any):
		self._conn = pymysql.connect(autocommit=False, charset="utf8mb4", **params)
		self._cursor = self._conn.cursor()

	def sql(self, query: str, values: Any = (), as_dict: bool = False) -> Any:
		self._cursor.execute(query, values if values != () else None)
		if not self._cursor.description:
			return ()
		rows = self._cursor.fetchall()
		if as_dict:
			columns = [c[0] for c in self._cursor.description]
			return [dict(zip(columns, row, strict=True)) for row in rows]
		return rows

	def commit(self) -> None:
		self._conn.commit()

	def rollback(self) -> None:
		self._conn.rollback()

	def close(self) -> None:
		try:
			self._conn.close()
		except Exception:
			pass


@contextlib.contextmanager
def frappe_gc_thresholds() -> Iterator[None]:
	"""The collector thresholds a Frappe process runs with: `import frappe` multiplies
	Python's (700, 10, 10) by (10, 2, 2) (frappe/__init__.py, `FRAPPE_TUNE_GC`, on by
	default), so a drainer in a bench collects ten times less often than a bare Python
	process would. The sandbox's work horse does not import Frappe: for the job it raises
	each threshold to at least Frappe's (never lowers one), and puts the previous ones
	back (a job run in process, e.g. by a profile)."""
	previous = gc.get_threshold()
	gc.set_threshold(*(max(now, frappe) for now, frappe in zip(previous, FRAPPE_GC_THRESHOLDS, strict=True)))
	try:
		yield
	finally:
		gc.set_threshold(*previous)


def drain(spec: dict) -> dict:
	"""The drainer job (runs in an RQ work horse). `spec`: site, db, redis_url, bootstrap,
	dead_letter_topic; optional: registry_url, idle_exit_seconds, batch_size,
	producer_properties (pairs), flush_timeout_seconds (the benchmarks pass the app's defaults)."""
	properties = spec.get("producer_properties", (("linger.ms", "5"), ("message.timeout.ms", "10000")))
	config = StreamingConfig(
		enabled=True, bootstrap_servers=spec["bootstrap"], producer_properties=tuple(map(tuple, properties))
	)
	producer_conf = kafka_config.producer_config(config)
	redis_client = signals.client(spec["redis_url"], 10)
	site = spec["site"]
	db = Database(**spec["db"])
	ids = None
	if spec.get("registry_url"):
		ids = framing.SchemaIds.from_config(framing.registry_config(spec["registry_url"]))
	drainer = Drainer(
		db=db,
		producer_factory=lambda: KafkaProducer(producer_conf),
		wake=signals.RedisWake(redis_client, site),
		heartbeat=signals.RedisHeartbeat(redis_client, site, f"sandbox-{datetime.now():%H%M%S%f}"),
		clock=SystemClock(),
		config=DrainerConfig(
			site=site,
			dead_letter_topic=spec["dead_letter_topic"],
			batch_size=spec.get("batch_size", 200),
			lease_seconds=30,
			idle_exit_seconds=spec.get("idle_exit_seconds", 20),
			poll_seconds=1,
			flush_timeout_seconds=spec.get("flush_timeout_seconds", 11),
			time_zone="UTC",
		),
		policy=RetryPolicy(base_seconds=1, cap_seconds=10, max_attempts=5),
		log=logging.getLogger("sandbox.drainer"),
		framer=framing.Framer(ids),
	)
	try:
		with frappe_gc_thresholds():
			stats = dataclasses.asdict(drainer.run())
	finally:
		db.close()
	pipe = redis_client.pipeline(transaction=False)
	for field, value in stats.items():
		if isinstance(value, int):
			pipe.hincrby(signals.stats_key(site), field, value)
	pipe.hincrby(signals.stats_key(site), "runs", 1)
	pipe.execute()
	return stats


def wake(redis_client: Any, queue: Any, spec: dict) -> str:
	"""After commit (and as the sweeper): signal the drainer; enqueue one when none runs.
	The job id makes the enqueue idempotent while a drainer is queued or starting."""
	from rq.job import Job, JobStatus

	if signals.signal(redis_client, spec["site"]):
		return "running"
	job_id = f"{spec['site']}::drainer"
	job = Job.fetch(job_id, connection=redis_client) if Job.exists(job_id, connection=redis_client) else None
	if job is not None and job.get_status() in (JobStatus.QUEUED, JobStatus.STARTED):
		return "queued"
	if job is not None:
		job.delete()
	queue.enqueue(DRAIN, spec, job_id=job_id, job_timeout=600, result_ttl=60, failure_ttl=3600)
	return "enqueued"
