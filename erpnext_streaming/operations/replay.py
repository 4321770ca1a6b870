"""Replay: publish Sent events again, with the same event ids, through the outbox.

For every Sent row written to the outbox in [start, end) (its `creation`), optionally of
one doctype, company or topic, a copy is written to the outbox as a new Queued row with
the same event id, event type, reference, topic, key, schema and payload bytes. The
drainer publishes the copies like any other rows, in order per company, with retries
and dead letters. Each copy gets the next `company_sequence` of its company, so the
per-company sequence stays gapless and in commit order; consumers recognise the replayed
events by their `ce_id` (unchanged) and deduplicate or reprocess as they need. The
original rows are left as they were (their partition and offset stay on record).

Chunks of `chunk_size` rows are committed one by one (the copies of a chunk in one
multi-row INSERT); the walk goes through the `status` index in name order, so the whole
replay reads each Sent row once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from erpnext_streaming import outbox
from erpnext_streaming.constants import EVENT_LOG_TABLE, Status

_T = f"`{EVENT_LOG_TABLE}`"
DEFAULT_CHUNK_SIZE = 500
_COPIED = (
	"name", "event_id", "event_type", "reference_doctype", "reference_name", "company", "event_time",
	"topic", "message_key", "schema_name", "schema_version", "schema_fingerprint", "payload",
)  # fmt: skip


class ReplayRefused(ValueError):
	pass


@dataclass
class ReplayResult:
	matched: int = 0
	queued: int = 0
	first: int | None = None  # first and last original Event Log names replayed
	last: int | None = None
	dry_run: bool = False


def _where(
	start: datetime, end: datetime, doctype: str | None, company: str | None, topic: str | None
) -> tuple[list[str], list[Any]]:
	if start >= end:
		raise ReplayRefused("--from must be before --to")
	conditions = ["`status` = %s", "`creation` >= %s", "`creation` < %s"]
	values: list[Any] = [Status.SENT, start, end]
	for column, value in (("reference_doctype", doctype), ("company", company), ("topic", topic)):
		if value:
			conditions.append(f"`{column}` = %s")
			values.append(value)
	return conditions, values


def count(
	db: Any,
	start: datetime,
	end: datetime,
	doctype: str | None = None,
	company: str | None = None,
	topic: str | None = None,
) -> int:
	conditions, values = _where(start, end, doctype, company, topic)
	return int(db.sql(f"SELECT COUNT(*) FROM {_T} WHERE {' AND '.join(conditions)}", values)[0][0])


def as_record(row: Any) -> outbox.OutboxRecord:
	return outbox.OutboxRecord(
		event_id=row["event_id"],
		event_type=row["event_type"],
		reference_doctype=row["reference_doctype"],
		reference_name=row["reference_name"],
		company=row["company"] or "",
		event_time=row["event_time"],
		topic=row["topic"],
		message_key=row["message_key"] if row["message_key"] is not None else (row["company"] or ""),
		schema_name=row["schema_name"] or "",
		schema_version=row["schema_version"] or 0,
		schema_fingerprint=row["schema_fingerprint"] or "",
		payload=outbox.decode_payload(row["payload"] or ""),
	)


def replay(
	db: Any,
	now: Callable[[], datetime],
	start: datetime,
	end: datetime,
	*,
	doctype: str | None = None,
	company: str | None = None,
	topic: str | None = None,
	chunk_size: int = DEFAULT_CHUNK_SIZE,
	dry_run: bool = False,
	before_commit: Callable[[], None] | None = None,
	progress: Any = None,
	user: str = outbox.SYSTEM_USER,
) -> ReplayResult:
	conditions, values = _where(start, end, doctype, company, topic)
	result = ReplayResult(dry_run=dry_run)
	if dry_run:
		result.matched = count(db, start, end, doctype, company, topic)
		return result
	# the copies are Queued, never Sent, and get higher names: the walk never meets them
	ceiling = db.sql(f"SELECT COALESCE(MAX(`name`), 0) FROM {_T}")[0][0]
	after = 0
	while True:
		rows = db.sql(
			f"SELECT {', '.join(f'`{c}`' for c in _COPIED)} FROM {_T} WHERE {' AND '.join(conditions)} "
			"AND `name` > %s AND `name` <= %s ORDER BY `name` LIMIT %s",
			[*values, after, ceiling, chunk_size],
			as_dict=True,
		)
		if not rows:
			break
		outbox.write(db, [as_record(r) for r in rows], now(), user)
		if before_commit is not None:
			before_commit()
		db.commit()
		after = rows[-1]["name"]
		result.first = result.first or rows[0]["name"]
		result.last = after
		result.matched += len(rows)
		result.queued += len(rows)
		if progress is not None:
			progress.update(result.queued)
	return result
