"""Chunked, resumable emission of events for existing rows: backfills and revaluations.

A job is a Streaming Backfill row (scope, counters, JSON checkpoint). `run` fetches a chunk
from its `Source`, captures each row through the live capture core (`emitters.capture`),
drops event ids already in the Event Log, and commits the chunk's events with the checkpoint
after them, so a run stopped anywhere resumes after the last committed chunk and writes no
event twice. A MariaDB named lock per job keeps two runs apart and dies with the connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime
from typing import Any, Protocol

from erpnext_streaming.catalog import Route
from erpnext_streaming.constants import EVENT_LOG_TABLE
from erpnext_streaming.emitters import capture
from erpnext_streaming.operations.secrets import redact
from erpnext_streaming.outbox.mariadb import get_lock, lock_name, release_lock
from erpnext_streaming.outbox.records import (
	NO_CONTEXT,
	SYSTEM_USER,
	MessageContext,
	OutboxRecord,
	truncate_error,
)
from erpnext_streaming.outbox.write import write

JOB_DOCTYPE = "Streaming Backfill"
JOB_TABLE = f"tab{JOB_DOCTYPE}"
JOB_SEQUENCE = "streaming_backfill_id_seq"
DEFAULT_CHUNK_SIZE = 500
_J = f"`{JOB_TABLE}`"


class Kind:
	BACKFILL = "Backfill"
	REVALUATION = "Revaluation"


class JobStatus:
	QUEUED = "Queued"
	RUNNING = "Running"
	INTERRUPTED = "Interrupted"
	FAILED = "Failed"
	CANCELLED = "Cancelled"
	COMPLETED = "Completed"

	UNFINISHED = (QUEUED, RUNNING, INTERRUPTED, FAILED)


class Outcome:
	COMPLETED = "completed"
	INTERRUPTED = "interrupted"  # Ctrl-C / SIGTERM: resume with the same command
	FAILED = "failed"  # an exception: fix the cause, resume with the same command
	BUSY = "busy"  # another run holds this job
	PAUSED = "paused"  # `stop()` said so between chunks: the job is Queued again


@dataclass
class Job:
	name: int
	kind: str
	status: str
	reference_doctype: str = ""
	company: str = ""
	from_date: date | None = None
	to_date: date | None = None
	repost_item_valuation: str = ""
	scope: Any = None
	checkpoint: Any = None
	total: int = 0
	processed: int = 0
	emitted: int = 0
	skipped: int = 0
	last_error: str = ""
	started_at: datetime | None = None
	finished_at: datetime | None = None

	def summary(self) -> dict[str, Any]:
		hidden = ("from_date", "to_date", "scope", "checkpoint", "started_at", "finished_at")
		return {k: v for k, v in asdict(self).items() if k not in hidden}


_COLUMNS = tuple(f.name for f in fields(Job))
_SELECT = f"SELECT {', '.join(f'`{c}`' for c in _COLUMNS)} FROM {_J}"
_UNFINISHED = f"`status` IN ({', '.join(['%s'] * len(JobStatus.UNFINISHED))})"


def _loads(text: str | None) -> Any:
	return json.loads(text) if text else None


def _dumps(value: Any) -> str | None:
	return None if value is None else json.dumps(value, default=str, separators=(",", ":"))


def _job(row: Any) -> Job:
	values = {c: row[c] for c in _COLUMNS}
	values["scope"] = _loads(values["scope"])
	values["checkpoint"] = _loads(values["checkpoint"])
	for key in ("reference_doctype", "company", "repost_item_valuation", "last_error"):
		values[key] = values[key] or ""
	for key in ("total", "processed", "emitted", "skipped"):
		values[key] = int(values[key] or 0)
	return Job(**values)


def create(db: Any, kind: str, now: datetime, user: str = SYSTEM_USER, **fields: Any) -> Job:
	"""Insert a Queued job (its name is drawn from Frappe's autoincrement sequence)."""
	values = {
		"kind": kind,
		"status": JobStatus.QUEUED,
		"reference_doctype": fields.get("reference_doctype") or "",
		"company": fields.get("company") or "",
		"from_date": fields.get("from_date"),
		"to_date": fields.get("to_date"),
		"repost_item_valuation": fields.get("repost_item_valuation") or "",
		"scope": _dumps(fields.get("scope")),
		"checkpoint": None,
		"total": int(fields.get("total") or 0),
	}
	columns = ["creation", "modified", "owner", "modified_by", "docstatus", "idx", *values]
	db.sql(
		f"INSERT INTO {_J} (`name`, {', '.join(f'`{c}`' for c in columns)}) "
		f"VALUES (NEXTVAL(`{JOB_SEQUENCE}`), {', '.join(['%s'] * len(columns))})",
		[now, now, user, user, 0, 0, *values.values()],
	)
	name = db.sql(f"SELECT LASTVAL(`{JOB_SEQUENCE}`)")[0][0]
	return load(db, name)


def load(db: Any, name: Any) -> Job:
	rows = db.sql(f"{_SELECT} WHERE `name` = %s", (name,), as_dict=True)
	if not rows:
		raise LookupError(f"{JOB_DOCTYPE} {name} does not exist")
	return _job(rows[0])


def find_unfinished(db: Any, kind: str, **match: Any) -> list[Job]:
	"""Unfinished jobs of a kind whose scope fields equal `match` (None matches NULL), oldest first."""
	conditions, values = ["`kind` = %s", _UNFINISHED], [kind, *JobStatus.UNFINISHED]
	for column, value in match.items():
		if value is None or value == "":
			text = column not in ("from_date", "to_date")  # '' is no DATE value
			conditions.append(f"(`{column}` IS NULL OR `{column}` = '')" if text else f"`{column}` IS NULL")
		else:
			conditions.append(f"`{column}` = %s")
			values.append(value)
	rows = db.sql(f"{_SELECT} WHERE {' AND '.join(conditions)} ORDER BY `name`", values, as_dict=True)
	return [_job(r) for r in rows]


def unfinished(db: Any, limit: int = 20) -> list[Job]:
	rows = db.sql(
		f"{_SELECT} WHERE {_UNFINISHED} ORDER BY `name` LIMIT %s",
		[*JobStatus.UNFINISHED, limit],
		as_dict=True,
	)
	return [_job(r) for r in rows]


def save(db: Any, job: Job, now: datetime) -> None:
	db.sql(
		f"UPDATE {_J} SET `status` = %s, `checkpoint` = %s, `total` = %s, `processed` = %s, `emitted` = %s, "
		"`skipped` = %s, `last_error` = %s, `started_at` = %s, `finished_at` = %s, `modified` = %s "
		"WHERE `name` = %s",
		(
			job.status,
			_dumps(job.checkpoint),
			job.total,
			job.processed,
			job.emitted,
			job.skipped,
			truncate_error(job.last_error),
			job.started_at,
			job.finished_at,
			now,
			job.name,
		),
	)


# -- the run loop ------------------------------------------------------------------------


class Source(Protocol):
	"""The rows a job visits, in a stable order, resumable from a JSON-able checkpoint."""

	def count(self, db: Any) -> int: ...

	def fetch(self, db: Any, checkpoint: Any, limit: int) -> tuple[list[dict], Any]:
		"""Up to `limit` rows after `checkpoint` (None = from the start) and the checkpoint
		after them; an empty list when the scope is exhausted."""
		...


class ProgressSink(Protocol):
	def update(self, done: int) -> None: ...


@dataclass
class RunResult:
	job: Job
	outcome: str
	error: str = ""
	chunks: int = 0
	written: list[str] = field(default_factory=list)  # event ids written by this run (tests, summaries)

	@property
	def ok(self) -> bool:
		return self.outcome == Outcome.COMPLETED


def existing_event_ids(db: Any, event_ids: Sequence[str]) -> set[str]:
	"""Which of these event ids the Event Log already holds (index on event_id)."""
	return _in_event_log(db, "event_id", event_ids)


def posted_already(db: Any, doctype: str, names: Sequence[str]) -> set[str]:
	"""Which of these ledger rows the Event Log holds a `posted` event of (index on
	reference_name). A ledger row is posted once: ERPNext changes it later only by a cancel's
	bulk UPDATE of is_cancelled / delinked and `modified` (erpnext/accounts/general_ledger.py
	make_reverse_gl_entries, erpnext/stock/stock_ledger.py set_as_cancel, erpnext/accounts/
	utils.py delink_original_entry), which the stream states with the reversal rows."""
	posted = " AND `event_type` = 'posted' AND `reference_doctype` = %s"
	return _in_event_log(db, "reference_name", names, posted, doctype)


def _in_event_log(db: Any, column: str, values: Sequence[str], where: str = "", *args: Any) -> set[str]:
	found: set[str] = set()
	values = list(dict.fromkeys(values))
	for start in range(0, len(values), 1000):
		chunk = values[start : start + 1000]
		marks = ", ".join(["%s"] * len(chunk))
		sql = f"SELECT `{column}` FROM `{EVENT_LOG_TABLE}` WHERE `{column}` IN ({marks}){where}"
		found.update(r[0] for r in db.sql(sql, [*chunk, *args]))
	return found


def build_records(
	db: Any, rows: Sequence[Any], route: Route, codec: Any, now: datetime
) -> list[OutboxRecord]:
	"""The outbox records of rows, exactly as the live capture would build them at commit."""
	buffer = capture.Buffer()
	for row in rows:
		try:
			capture.capture(buffer, row, route, now, codec)
		except Exception as e:
			capture.capture_failed(buffer, row, route, route.method, capture.describe_error(e))
	return capture.flush(buffer, db, codec)


def run(
	db: Any,
	job: Job,
	source: Source,
	route: Route,
	codec: Any,
	clock: Callable[[], datetime],
	*,
	chunk_size: int = DEFAULT_CHUNK_SIZE,
	progress: ProgressSink | None = None,
	before_commit: Callable[[], None] | None = None,
	secrets: Sequence[str] = (),
	stop: Callable[[], bool] | None = None,
	context: MessageContext = NO_CONTEXT,
) -> RunResult:
	"""Run (or resume) a job to the end of its scope; see the module doc.

	`before_commit` is called before each chunk's COMMIT (the glue registers the drainer's
	after-commit wake-up there). `stop` is asked after each chunk; when it says so the
	job goes back to Queued (a later run continues it). Never raises for a failing chunk:
	the chunk is rolled back, the job is marked Failed (or Interrupted for
	KeyboardInterrupt) with the reason, and the result says so.
	"""
	lock = lock_name(db, f"job:{job.name}")
	if not get_lock(db, lock, 0):
		db.commit()
		return RunResult(job, Outcome.BUSY, f"{JOB_DOCTYPE} {job.name} is being run by another process")
	result = RunResult(job, Outcome.COMPLETED)
	try:
		job = result.job = _start(db, job.name, source, clock, progress)
		while True:
			rows, checkpoint = source.fetch(db, job.checkpoint, chunk_size)
			if not rows:
				break
			fresh = _write_chunk(db, job, rows, checkpoint, route, codec, clock(), context, before_commit)
			result.chunks += 1
			result.written += [r.event_id for r in fresh]
			if progress is not None:
				progress.update(job.processed)
			if stop is not None and stop():
				job.status = JobStatus.QUEUED
				save(db, job, clock())
				db.commit()
				result.outcome = Outcome.PAUSED
				return result
		job.status, job.finished_at = JobStatus.COMPLETED, clock()
		save(db, job, job.finished_at)
		db.commit()
	except BaseException as e:
		if not isinstance(e, Exception | KeyboardInterrupt):
			raise  # SystemExit and friends: leave as they came
		_record_failure(db, job.name, e, clock, secrets, result)
	finally:
		release_lock(db, lock)
	return result


def _start(
	db: Any, name: int, source: Source, clock: Callable[[], datetime], progress: ProgressSink | None
) -> Job:
	"""The job as committed (the truth), marked Running and committed; a fresh start (no
	checkpoint) counts its scope, a resumed run keeps its total."""
	job = load(db, name)
	now = clock()
	if job.checkpoint is None:
		job.total, job.processed, job.emitted, job.skipped = source.count(db), 0, 0, 0
	job.status, job.last_error, job.finished_at = JobStatus.RUNNING, "", None
	job.started_at = job.started_at or now
	save(db, job, now)
	db.commit()
	if progress is not None and hasattr(progress, "total"):
		progress.total = job.total
	return job


def _write_chunk(
	db: Any,
	job: Job,
	rows: Sequence[Any],
	checkpoint: Any,
	route: Route,
	codec: Any,
	now: datetime,
	context: MessageContext,
	before_commit: Callable[[], None] | None,
) -> list[OutboxRecord]:
	"""Steps 2-4 of the module doc for one chunk: its new events and the checkpoint after
	it in ONE commit. Returns the records written."""
	records = build_records(db, rows, route, codec, now)
	seen = existing_event_ids(db, [r.event_id for r in records])
	posted = posted_already(
		db, route.doctype, [r.reference_name for r in records if r.event_type == "posted"]
	)
	fresh = [r for r in records if r.event_id not in seen and r.reference_name not in posted]
	write(db, fresh, now, context)
	job.checkpoint = checkpoint
	job.processed += len(rows)
	job.emitted += len(fresh)
	job.skipped += len(rows) - len(fresh)
	save(db, job, now)
	if before_commit is not None:
		before_commit()
	db.commit()
	return fresh


def _record_failure(
	db: Any,
	name: int,
	error: BaseException,
	clock: Callable[[], datetime],
	secrets: Sequence[str],
	result: RunResult,
) -> None:
	"""Roll the failed chunk back, then mark the job Failed (Interrupted for
	KeyboardInterrupt) with the reason, secrets redacted, in a transaction of its own."""
	interrupted = isinstance(error, KeyboardInterrupt)
	db.rollback()
	reason = "interrupted" if interrupted else redact(capture.describe_error(error), secrets)
	try:
		committed = load(db, name)
		committed.status = JobStatus.INTERRUPTED if interrupted else JobStatus.FAILED
		committed.last_error = reason
		save(db, committed, clock())
		db.commit()
		result.job = committed
	except Exception:
		db.rollback()
	result.outcome = Outcome.INTERRUPTED if interrupted else Outcome.FAILED
	result.error = reason
