"""Frappe glue for delivery: the drainer job (`drain`), the sweeper job (`sweep`, every minute)
and enqueueing the drainer.

The SASL password and the client key are read here with `get_password` and go nowhere else.
Tuning keys (site config): docs/architecture.md, "Tuning (site config)".
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from zoneinfo import ZoneInfo

import frappe
from frappe.utils import get_system_timezone, now_datetime
from rq.job import JobStatus

from erpnext_streaming import constants as c
from erpnext_streaming import kafka_config
from erpnext_streaming.delivery import framing, lifecycle, signals, sweeper
from erpnext_streaming.delivery.drainer import Drainer
from erpnext_streaming.delivery.environment import DrainerConfig, SystemClock, new_owner
from erpnext_streaming.delivery.policy import RetryPolicy
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.outbox.records import MessageContext
from erpnext_streaming.settings import StreamingConfig

DRAINER_JOB_ID = "erpnext_streaming.delivery.drainer"
# a successor takes the id its predecessor does not hold (see `enqueue_drainer`)
DRAINER_JOB_IDS = (DRAINER_JOB_ID, f"{DRAINER_JOB_ID}.next")
LOGGER = "erpnext_streaming"
# a started drainer job takes its heartbeat within this, or its worker is gone
STARTING_SECONDS = 3 * signals.HEARTBEAT_SECONDS
# derived writer schemas of this process, by fingerprint (`writer_schema`)
_WRITER_SCHEMAS: dict = {}
# librdkafka's own default when neither property is set
LIBRDKAFKA_MESSAGE_TIMEOUT_MS = 300000


def drain() -> dict:
	"""The drainer job, one slice of delivery. Returns its statistics (stored by RQ; no
	configuration in them). It stops at a batch boundary when its slice is over, its
	worker is shutting down or Streaming Settings were saved, and enqueues its successor
	when work is left (delivery/lifecycle.py)."""
	settings = frappe.get_single(c.SETTINGS_DOCTYPE)
	config = StreamingConfig.from_doc(settings)
	if not config.enabled or not config.bootstrap_servers:
		return {"exit_reason": "streaming is disabled"}
	password, key = credentials(settings, config)
	registry_password = None
	if config.schema_registry_username:
		registry_password = settings.get_password("schema_registry_password", raise_exception=False)
	producer_conf = kafka_config.producer_config(config, password, key)
	drainer_config = build_drainer_config(config, producer_conf)
	site = frappe.local.site
	redis_client = queue_redis(timeout=drainer_config.poll_seconds + 5)
	owner = new_owner()
	log = frappe.logger(LOGGER)
	stop = lifecycle.StopSignals(redis_client, site, _worker_key())
	drainer = Drainer(
		db=frappe.db,
		producer_factory=lambda: KafkaProducer(producer_conf, logger=log),
		wake=signals.RedisWake(redis_client, site),
		heartbeat=signals.RedisHeartbeat(redis_client, site, owner),
		clock=SystemClock(now_datetime),
		config=drainer_config,
		policy=retry_policy(config),
		secrets=tuple(s for s in (password, registry_password, key) if s),
		log=log,
		owner=owner,
		framer=build_framer(config, registry_password),
		stop=stop,
	)
	with stop.on_sigterm():
		stats = drainer.run()
	_record(redis_client, site, asdict(stats))
	hand_over(stats.exit_reason, redis_client, site)
	return asdict(stats)


def hand_over(exit_reason: str, redis_client, site: str) -> bool:
	"""The last step of a drainer job: enqueue its successor when work is left, or when a
	commit's wake-up came while this job was leaving (its enqueue was skipped then)."""

	def work_left() -> bool:
		frappe.db.rollback()  # a fresh snapshot
		return signals.RedisWake(redis_client, site).pending() or sweeper.has_pending_work(frappe.db)

	if not lifecycle.needs_successor(exit_reason, work_left):
		return False
	enqueue_drainer(successor=True)
	return True


def _worker_key() -> str | None:
	"""The RQ worker running this job (its hash holds `shutdown_requested_date`)."""
	from rq import get_current_job
	from rq.worker import Worker

	job = get_current_job()
	return f"{Worker.redis_worker_namespace_prefix}{job.worker_name}" if job and job.worker_name else None


def credentials(settings, config: StreamingConfig) -> tuple[str | None, str | None]:
	"""(SASL password, Client Key) for the configured protocol, read with `get_password`."""
	password = key = None
	if config.security_protocol.startswith("SASL"):
		password = settings.get_password("sasl_password", raise_exception=False)
	if config.security_protocol.endswith("SSL") and config.ssl_certificate:
		key = settings.get_password("ssl_key", raise_exception=False)
	return password, key


def sweep() -> dict:
	"""Scheduler job (every minute): release expired leases and a dead drainer's, bundle lost
	pending rows, ensure a drainer when rows wait."""
	config = StreamingConfig.from_doc(frappe.get_single(c.SETTINGS_DOCTYPE))
	if not config.enabled:
		return {"ran": False, "drainer": "streaming is disabled"}
	site, redis_client = frappe.local.site, queue_redis(timeout=5)
	result = sweeper.sweep(
		frappe.db,
		now_datetime(),
		lambda: ensure_drainer(stale_after=STARTING_SECONDS),
		lambda owner: signals.owner_alive(redis_client, site, owner),
		MessageContext(site, ZoneInfo(get_system_timezone() or "UTC")),
	)
	return asdict(result)


def enqueue_drainer(successor: bool = False) -> None:
	"""Queue the site's drainer unless one is queued, or (for a commit's wake-up, not a
	successor) one counts as started. The two job ids alternate (`DRAINER_JOB_IDS`): a
	leaving drainer's successor takes the id it does not hold, so RQ's deduplication never
	skips it."""
	states = _drainer_jobs()
	if any(status == JobStatus.QUEUED for _, status in states.values()):
		return
	busy = {job_id for job_id, (_, status) in states.items() if status == JobStatus.STARTED}
	if busy and not successor:
		return
	free = [job_id for job_id in DRAINER_JOB_IDS if job_id not in busy]
	if not free:
		return
	frappe.enqueue(
		"erpnext_streaming.delivery.jobs.drain",
		queue=frappe.conf.get("erpnext_streaming_drainer_queue") or "long",  # docs/operations.md
		timeout=c.LONG_QUEUE_TIMEOUT_SECONDS,
		job_id=free[0],
		deduplicate=True,
	)


def _drainer_jobs() -> dict:
	"""{job id: (job, status)} of the drainer jobs RQ still knows."""
	from frappe.utils.background_jobs import get_job

	found = {}
	for job_id in DRAINER_JOB_IDS:
		job = get_job(job_id)
		if job is not None:
			found[job_id] = (job, job.get_status())
	return found


def ensure_drainer(stale_after: float) -> str:
	"""Make sure a drainer is queued or running; replaces a dead one (its RQ job still says
	"started" after its worker was killed, but its heartbeat lapsed within seconds)."""
	from rq.utils import utcnow

	site = frappe.local.site
	redis_client = queue_redis(timeout=5)
	if signals.signal(redis_client, site):
		return "running"
	states = _drainer_jobs()
	if any(status == JobStatus.QUEUED for _, status in states.values()):
		return "queued"
	started = [job for job, status in states.values() if status == JobStatus.STARTED]
	for job in started:
		if job.started_at is not None and (utcnow() - job.started_at).total_seconds() < stale_after:
			return "starting"
	for job in started:
		job.delete()  # its worker is gone: no heartbeat since it started
		frappe.logger(LOGGER).warning(
			"erpnext_streaming: the drainer job started at %s has no heartbeat; replacing it", job.started_at
		)
	enqueue_drainer()
	return "replaced" if started else "enqueued"


def build_drainer_config(config: StreamingConfig, producer_conf: dict) -> DrainerConfig:
	conf = frappe.conf
	timeout_ms = producer_conf.get("message.timeout.ms") or producer_conf.get("delivery.timeout.ms")
	message_timeout = int(timeout_ms or LIBRDKAFKA_MESSAGE_TIMEOUT_MS) / 1000
	return DrainerConfig(
		site=frappe.local.site,
		dead_letter_topic=config.dead_letter_topic,
		batch_size=max(1, config.batch_size),
		lease_seconds=float(conf.get("erpnext_streaming_lease_seconds") or c.DEFAULT_LEASE_SECONDS),
		max_runtime_seconds=float(
			conf.get("erpnext_streaming_drainer_max_runtime_seconds") or c.DEFAULT_DRAINER_MAX_RUNTIME_SECONDS
		),
		slice_seconds=float(
			conf.get("erpnext_streaming_drainer_slice_seconds", c.DEFAULT_DRAINER_SLICE_SECONDS)
		),
		max_batches=int(conf.get("erpnext_streaming_drainer_slice_batches") or 0),
		idle_exit_seconds=float(conf.get("erpnext_streaming_drainer_idle_exit_seconds") or 60),
		poll_seconds=float(conf.get("erpnext_streaming_drainer_poll_seconds") or 5),
		flush_timeout_seconds=message_timeout + 1,
		time_zone=get_system_timezone() or "UTC",
	)


def build_framer(config: StreamingConfig, registry_password: str | None) -> framing.Framer:
	"""The drainer's framer: a registry client only when a Schema Registry URL is set
	(contacted from this job, never from a user's request)."""
	ids = None
	if config.schema_registry_url:
		conf = framing.registry_config(
			config.schema_registry_url,
			config.schema_registry_username,
			registry_password,
			config.schema_registry_ca_certificate,
		)
		ids = framing.SchemaIds.from_config(
			conf, strategy=config.subject_name_strategy, auto_register=config.schema_registry_auto_register
		)
	return framing.Framer(ids, writer_schema)


def writer_schema(doctype: str, version: int, fingerprint: str):
	"""The schema a row was written with: shipped, or derived (stored by fingerprint when the
	event was captured, `schemas.stored`; else derived from the doctype's meta as it is now).
	Kept per process by fingerprint, which names one schema for ever: the drainer asks once
	per message."""
	from erpnext_streaming.schemas import shipped_doctypes

	if doctype in shipped_doctypes():
		return framing.shipped_schema(doctype, version, fingerprint)
	schema = _WRITER_SCHEMAS.get(fingerprint)
	if schema is None:
		from erpnext_streaming.emitters.codec import derive_from_meta
		from erpnext_streaming.schemas import stored

		schema = stored.load(frappe.db, fingerprint) or derive_from_meta(doctype)
		if schema.fingerprint != fingerprint:
			raise framing.FramingError(
				f"{doctype}'s meta changed since the event was captured (schema fingerprint {fingerprint}, "
				f"now {schema.fingerprint}): its writer schema cannot be registered"
			)
		_WRITER_SCHEMAS[fingerprint] = schema
	return schema


def retry_policy(config: StreamingConfig) -> RetryPolicy:
	base = max(1, config.backoff_base_seconds)
	return RetryPolicy(
		base_seconds=base,
		cap_seconds=max(base, config.backoff_cap_seconds),
		max_attempts=max(1, config.max_attempts),
	)


def queue_redis(timeout: float):
	"""A client of the queue Redis (where RQ and the wake-up list live) with `timeout`."""
	return signals.client(frappe.conf.redis_queue, timeout, **_queue_credentials())


def _queue_credentials() -> dict:
	"""What frappe.utils.background_jobs.get_redis_conn authenticates with."""
	import os

	if frappe.conf.get("use_rq_auth"):
		from frappe.utils import get_bench_id

		return {
			"username": frappe.conf.get("rq_username") or get_bench_id(),
			"password": frappe.conf.get("rq_password"),
		}
	if os.environ.get("RQ_ADMIN_PASWORD"):
		return {"username": "default", "password": os.environ.get("RQ_ADMIN_PASWORD")}
	return {}


def _record(redis_client, site: str, stats: dict) -> None:
	"""Running totals of the site's drainers (for health checks and the tests)."""
	with contextlib.suppress(Exception):
		key = signals.stats_key(site)
		pipe = redis_client.pipeline(transaction=False)
		pipe.hincrby(key, "runs", 1)
		for field, value in stats.items():
			if isinstance(value, int):
				pipe.hincrby(key, field, value)
		pipe.hset(key, "last_exit_reason", stats.get("exit_reason") or "")
		pipe.expire(key, 7 * 24 * 3600)
		pipe.execute()
