"""Frappe glue of the operations layer: the site's settings, catalog, codec, Kafka connection
and Redis, handed to the framework-free cores, for the bench commands, `api`, the Repost
Item Valuation hook (`on_repost_change`) and the revaluation job. Every text that leaves
here (status, health, connection checks, errors) is redacted of the SASL password."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, TextIO

import frappe
from frappe.utils import now_datetime

from erpnext_streaming import constants as c
from erpnext_streaming import topics as topics_core
from erpnext_streaming.catalog import Route, get_catalog
from erpnext_streaming.cluster import describe_cluster
from erpnext_streaming.emitters.handler import message_context
from erpnext_streaming.kafka_config import admin_config
from erpnext_streaming.operations import backfill as backfill_core
from erpnext_streaming.operations import jobs, revaluation, schema_export
from erpnext_streaming.operations import replay as replay_core
from erpnext_streaming.operations import status as status_core
from erpnext_streaming.operations.progress import Progress
from erpnext_streaming.operations.secrets import redact
from erpnext_streaming.outbox.requeue import count_candidates, requeue_candidates
from erpnext_streaming.outbox.requeue import requeue as requeue_rows
from erpnext_streaming.settings import StreamingConfig

LOGGER = "erpnext_streaming"
REVALUATION_METHOD = "erpnext_streaming.operations.site.run_pending_revaluations"
REVALUATION_JOB_ID = "erpnext_streaming.revaluations"
# a revaluation job pauses (and queues its continuation) before the long queue's timeout
REVALUATION_MAX_SECONDS = 1200
BROKER_TIMEOUT_SECONDS = 5.0
BROKER_CHECK_SECONDS, BROKER_CHECK_KEY = 30, "erpnext_streaming:health_broker"
NO_SERVERS = {
	"ok": False,
	"error": "Bootstrap Servers is empty: enter host:port in Streaming Settings and save",
}


# -- settings and secrets ----------------------------------------------------------------


def settings() -> tuple[Any, StreamingConfig]:
	doc = frappe.get_single(c.SETTINGS_DOCTYPE)
	return doc, StreamingConfig.from_doc(doc)


def admin(doc: Any, config: StreamingConfig) -> dict[str, str]:
	"""The AdminClient configuration of the saved connection, with the credentials the
	drainer reads (`delivery.jobs.credentials`)."""
	from erpnext_streaming.delivery.jobs import credentials

	return admin_config(config, *credentials(doc, config))


def secrets() -> tuple[str, ...]:
	"""Every stored secret this site could leak into a text: the value of each Password
	field of Streaming Settings (the SASL password, the Schema Registry password, and any
	added later)."""
	try:
		doc = frappe.get_single(c.SETTINGS_DOCTYPE)
		fields = [
			df.fieldname for df in frappe.get_meta(c.SETTINGS_DOCTYPE).fields if df.fieldtype == "Password"
		]
		found = (doc.get_password(fieldname, raise_exception=False) for fieldname in fields)
		return tuple(s for s in found if s)
	except Exception:
		return ()


REQUEUE_CHUNK = 5000


def wake_after_commit() -> None:
	from erpnext_streaming.delivery import wake

	frappe.db.after_commit.add(wake.after_commit)


# -- status, health, connection ----------------------------------------------------------


def broker_status(doc: Any, config: StreamingConfig, timeout: float) -> dict[str, Any]:
	if not config.bootstrap_servers:
		return {"reachable": False, "error": "Bootstrap Servers is empty"}
	answer = describe_cluster(admin(doc, config), timeout=timeout)
	if answer["ok"]:
		return {
			"reachable": True,
			"cluster_id": answer["cluster_id"],
			"brokers": len(answer["brokers"]),
			"error": None,
		}
	return {"reachable": False, "error": answer["error"]}


def drainer_status() -> dict[str, Any]:
	from erpnext_streaming.delivery import jobs as delivery_jobs
	from erpnext_streaming.delivery import signals

	try:
		client = delivery_jobs.queue_redis(timeout=1.0)
		return {"running": signals.drainer_running(client, frappe.local.site)}
	except Exception as e:
		return {"running": None, "error": f"Redis: {type(e).__name__}"}


def max_lag_seconds() -> float:
	return float(
		frappe.conf.get("erpnext_streaming_health_max_lag_seconds") or status_core.DEFAULT_MAX_LAG_SECONDS
	)


def status_report(check_broker: bool = True, per_topic: bool = True) -> status_core.StatusReport:
	doc, config = settings()
	window = frappe.conf.get("erpnext_streaming_health_dead_letter_window_seconds")
	report = status_core.collect(
		frappe.db, now_datetime(), per_topic, int(window or status_core.DEAD_LETTER_WINDOW_SECONDS)
	)
	report.enabled = config.enabled
	if check_broker:
		report.broker = broker_status(doc, config, BROKER_TIMEOUT_SECONDS)
	report.drainer = drainer_status()
	report.jobs = [job.summary() for job in jobs.unfinished(frappe.db)]
	return report


def status_text(check_broker: bool = True) -> tuple[str, str]:
	"""(`bench streaming status` output, overall health)."""
	report = status_report(check_broker=check_broker)
	limit = max_lag_seconds()
	health, _ = status_core.assess(report, limit)
	return redact(status_core.render_text(report, limit), secrets()), health


def status_json(check_broker: bool = True) -> dict[str, Any]:
	report = status_report(check_broker=check_broker)
	payload = status_core.health_payload(report, max_lag_seconds())
	payload["per_topic"] = {topic: counts for topic, counts in report.per_topic}
	payload["jobs"] = report.jobs
	return redact(payload, secrets())


def health(check_broker: bool = True) -> dict[str, Any]:
	"""The payload of `api.health`: cheap queries only (no per-topic scan, no Sent count),
	and the broker asked at most once per `BROKER_CHECK_SECONDS` (monitoring polls often)."""
	report = status_report(check_broker=False, per_topic=False)
	report.broker = frappe.cache.get_value(BROKER_CHECK_KEY, expires=True) if check_broker else None
	if check_broker and report.broker is None:
		doc, config = settings()
		report.broker = broker_status(doc, config, BROKER_TIMEOUT_SECONDS)
		report.broker["checked_at"] = now_datetime().isoformat(sep=" ", timespec="seconds")
		frappe.cache.set_value(BROKER_CHECK_KEY, report.broker, expires_in_sec=BROKER_CHECK_SECONDS)
	return redact(status_core.health_payload(report, max_lag_seconds()), secrets())


def check_connection(timeout: float = 10.0) -> dict[str, Any]:
	"""describe_cluster of the saved connection, plus the state of each topic the app writes
	(`topics.survey`: exists, layout or our recommendation, warnings)."""
	doc, config = settings()
	if not config.bootstrap_servers:
		return dict(NO_SERVERS)
	answer = topics_core.survey(config, admin(doc, config), timeout)[0]
	return redact(answer, secrets())


def create_topics(dry_run: bool = False, timeout: float = topics_core.DEFAULT_TIMEOUT_SECONDS) -> dict:
	"""`topics.create` with the saved connection, plus the companies held right now."""
	doc, config = settings()
	if not config.bootstrap_servers:
		return dict(NO_SERVERS)
	conf = admin(doc, config)
	answer = topics_core.create(config, conf, dry_run=dry_run, timeout=timeout)
	if answer["ok"]:
		answer["held"] = status_core.held(frappe.db)
	return redact(answer, secrets())


# -- requeue and replay -------------------------------------------------------------------


def requeue(
	statuses: Sequence[str] = c.Status.REQUEUEABLE,
	since: datetime | None = None,
	doctype: str | None = None,
	company: str | None = None,
	dry_run: bool = False,
	chunk: int = REQUEUE_CHUNK,
) -> dict[str, Any]:
	"""`bench streaming requeue`: every matching Failed/Dead row back into delivery."""
	filters: dict[str, Any] = {"status": list(statuses or c.Status.REQUEUEABLE)}
	if doctype:
		filters["reference_doctype"] = doctype
	if company:
		filters["company"] = company
	return requeue_matching(filters, since, dry_run, chunk)


def requeue_matching(
	filters: dict[str, Any], since: datetime | None = None, dry_run: bool = False, chunk: int = REQUEUE_CHUNK
) -> dict[str, Any]:
	"""`chunk` rows per committed transaction, so no set is too large and no counter lock
	is held for long (filters: `outbox.requeue.requeue_candidates`). Also the background job
	of a large requeue from the desk (`api.requeue`), run as the user who asked."""
	now = now_datetime()
	if dry_run:
		return {"matched": count_candidates(frappe.db, filters, since), "requeued": 0, "dry_run": True}
	matched = requeued = after = 0
	while names := requeue_candidates(frappe.db, filters, limit=chunk, since=since, after=after):
		matched, after = matched + len(names), names[-1]
		requeued += len(requeue_rows(frappe.db, names, now, frappe.session.user, message_context()))
		wake_after_commit()
		frappe.db.commit()  # each chunk its own transaction: counter locks held briefly, progress kept
	return {"matched": matched, "requeued": requeued, "dry_run": False}


def replay(
	start: datetime,
	end: datetime,
	doctype: str | None = None,
	company: str | None = None,
	topic: str | None = None,
	chunk_size: int = replay_core.DEFAULT_CHUNK_SIZE,
	dry_run: bool = False,
	stream: TextIO | None = None,
) -> replay_core.ReplayResult:
	progress = None
	if stream is not None and not dry_run:
		total = replay_core.count(frappe.db, start, end, doctype, company, topic)
		progress = Progress("Replay", total, stream)
	result = replay_core.replay(
		frappe.db,
		now_datetime,
		start,
		end,
		doctype=doctype,
		company=company,
		topic=topic,
		chunk_size=chunk_size,
		dry_run=dry_run,
		context=message_context(),
		before_commit=wake_after_commit,
		progress=progress,
	)
	if progress is not None:
		progress.close()
	return result


# -- backfill -----------------------------------------------------------------------------


def submit_route(doctype: str) -> Route:
	"""The catalog route of the doctype's submit event; refuses what does not stream."""
	config = settings()[1]
	if not config.enabled:
		raise backfill_core.BackfillRefused("streaming is disabled in Streaming Settings")
	spec = c.spec_for(doctype)
	trigger = next((t for t in spec.triggers if t.kind == c.Kind.SUBMIT), None)
	route = get_catalog().route(doctype, trigger.method) if trigger else None
	if route is None:
		raise backfill_core.BackfillRefused(
			f"{doctype} does not stream its submit events: add it to the Event Catalog with Submit ticked"
		)
	return route


def table_fields(doctype: str) -> list[tuple[str, str]]:
	return [(df.fieldname, df.options) for df in frappe.get_meta(doctype).get_table_fields()]


def backfill_scope_count(
	doctype: str, company: str = "", from_date: date | None = None, to_date: date | None = None
) -> int:
	"""How many submitted documents a backfill of this scope would visit (writes nothing)."""
	submit_route(doctype)
	return backfill_core.plan(frappe.db, doctype, table_fields(doctype), company, from_date, to_date).count(
		frappe.db
	)


def backfill(
	doctype: str,
	company: str = "",
	from_date: date | None = None,
	to_date: date | None = None,
	chunk_size: int = jobs.DEFAULT_CHUNK_SIZE,
	restart: bool = False,
	stream: TextIO | None = None,
	announce: Any = None,
	db: Any = None,
	progress: jobs.ProgressSink | None = None,
	stop: Any = None,
) -> tuple[jobs.RunResult, bool]:
	"""Run (or resume) the backfill of this scope; returns (result, resumed).

	The same doctype, company and dates resume the unfinished backfill of that scope from
	its checkpoint; `restart` cancels it and starts over (event ids already in the Event
	Log are skipped, so a restart writes no event twice either). `progress` and `stop`: see
	`jobs.run` (the desk's backfill passes them; `stream` draws a bar instead).
	"""
	db = db or frappe.db
	route = submit_route(doctype)
	source = backfill_core.plan(db, doctype, table_fields(doctype), company, from_date, to_date)
	scope = {
		"reference_doctype": doctype,
		"company": company or "",
		"from_date": from_date,
		"to_date": to_date,
	}
	found = jobs.find_unfinished(db, jobs.Kind.BACKFILL, **scope)
	now = now_datetime()
	if restart:
		for old in found:
			old.status, old.last_error = jobs.JobStatus.CANCELLED, "restarted"
			jobs.save(db, old, now)
		found = []
	job = found[-1] if found else jobs.create(db, jobs.Kind.BACKFILL, now, frappe.session.user, **scope)
	db.commit()
	if announce is not None:
		announce(job, bool(found))
	if stream is not None:
		progress = Progress(f"Backfill {doctype}", job.total, stream, start=job.processed)
	result = jobs.run(
		db,
		job,
		source,
		route,
		_codec(),
		now_datetime,
		chunk_size=chunk_size,
		progress=progress,
		context=message_context(),
		before_commit=wake_after_commit,
		secrets=secrets(),
		stop=stop,
	)
	if stream is not None:
		progress.close()
	return result, bool(found)


def _codec():
	from erpnext_streaming.emitters.codec import get_codec

	return get_codec()


# -- revaluation after a stock repost -------------------------------------------------------


def revalued_route() -> Route | None:
	"""The route of `revalued` SLE events, or None when SLE `posted` events do not stream."""
	posted = get_catalog().route(revaluation.SLE, "on_submit")
	return revaluation.revaluation_route(posted) if posted else None


def _reposted_items(doc: Any) -> list:
	"""The repost's final (item, warehouse, posting date/time) list, read the way ERPNext
	reads it (its reposting data file, else the items_to_be_repost field)."""
	try:
		from erpnext.stock.stock_ledger import get_items_to_be_repost

		return list(get_items_to_be_repost(doc=doc) or [])
	except Exception:
		return []


def on_repost_change(doc: Any, method: str | None = None, *args, **kwargs) -> None:
	"""doc_events on_change of Repost Item Valuation: when it becomes Completed, record a
	revaluation job (in the repost's own transaction) and run it after the commit.

	Never raises into ERPNext's repost."""
	try:
		if doc.get("status") != "Completed" or int(doc.get("docstatus") or 0) != 1:
			return
		flags = frappe.local.flags
		if flags.in_install or flags.in_uninstall:
			return
		if revalued_route() is None:
			return
		pending = jobs.find_unfinished(frappe.db, jobs.Kind.REVALUATION, repost_item_valuation=doc.name)
		if any(job.status == jobs.JobStatus.QUEUED for job in pending):
			return  # on_change fires again for the db_sets after "Completed"
		pairs = revaluation.scope(
			doc.get("based_on") or "",
			doc.get("item_code"),
			doc.get("warehouse"),
			doc.get("posting_date"),
			doc.get("posting_time"),
			_reposted_items(doc),
			revaluation.voucher_pairs(frappe.db, doc.voucher_type, doc.voucher_no)
			if doc.get("voucher_type") and doc.get("voucher_no")
			else (),
		)
		if not pairs:
			return
		jobs.create(
			frappe.db,
			jobs.Kind.REVALUATION,
			now_datetime(),
			frappe.session.user,
			reference_doctype=revaluation.SLE,
			company=doc.get("company") or "",
			repost_item_valuation=doc.name,
			scope=pairs,
		)
		frappe.db.after_commit.add(enqueue_revaluations)
	except Exception:
		frappe.log_error(
			title=f"erpnext_streaming: revaluation after {revaluation.REPOST_DOCTYPE} not recorded"
		)


def enqueue_revaluations(job_id: str | None = REVALUATION_JOB_ID) -> None:
	"""Queue the revaluation job (after commit: never raises; the hourly run catches up)."""
	try:
		frappe.enqueue(
			REVALUATION_METHOD,
			queue="long",
			timeout=c.LONG_QUEUE_TIMEOUT_SECONDS,
			job_id=job_id,
			deduplicate=bool(job_id),
		)
	except Exception as e:
		frappe.logger(LOGGER).warning(
			f"erpnext_streaming: cannot queue the revaluation job ({type(e).__name__}); the hourly run will"
		)


def run_pending_revaluations(
	db: Any = None, max_seconds: float = REVALUATION_MAX_SECONDS, clock=time.monotonic
) -> list[jobs.RunResult]:
	"""Background job (long queue; also hourly): emit every unfinished revaluation.

	Stops between chunks after `max_seconds` (before the long queue's timeout) and queues
	its own continuation."""
	db = db or frappe.db
	route = revalued_route()
	if route is None:
		return []
	deadline = clock() + max_seconds
	results = []
	for job in jobs.find_unfinished(db, jobs.Kind.REVALUATION):
		result = jobs.run(
			db,
			job,
			revaluation.LedgerSource.of(job.scope or []),
			route,
			_codec(),
			now_datetime,
			before_commit=wake_after_commit,
			secrets=secrets(),
			context=message_context(),
			stop=lambda: clock() >= deadline,
		)
		results.append(result)
		if result.outcome == jobs.Outcome.FAILED:
			frappe.logger(LOGGER).warning(
				f"erpnext_streaming: revaluation {job.name} failed, retried by the next run: {result.error}"
			)
		if result.outcome == jobs.Outcome.PAUSED:
			enqueue_revaluations(job_id=None)  # this job still runs: no deduplicated id
			break
	return results


# -- schemas --------------------------------------------------------------------------------


def export_schemas(directory: str | Path) -> list[Path]:
	"""Every shipped schema version, the derived schema of each admin-added catalog doctype,
	and every derived version stored before its doctype changed (`schemas.stored`)."""
	from erpnext_streaming.schemas import default_registry, stored

	config, registry, kept = settings()[1], default_registry(), stored.all_stored(frappe.db)
	schemas, topics, derived = [*registry.all(), *kept], {}, [s.doctype for s in kept]
	for row in config.catalog:
		if not row.document_type:
			continue
		if row.enabled:
			topics[row.document_type] = row.topic or c.default_topic(config.topic_prefix, row.document_type)
		if row.document_type not in registry.shipped_doctypes():
			from erpnext_streaming.emitters.codec import derive_from_meta

			schemas.append(derive_from_meta(row.document_type))
			derived.append(row.document_type)
	return schema_export.export(directory, schemas, topics, derived)
