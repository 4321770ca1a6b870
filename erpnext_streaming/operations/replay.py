"""Replay: publish Sent events again, with the same event ids, through the outbox.

Each Sent row created in [start, end) (optionally of one doctype, company or topic) is
copied as a new Queued row with the same event id and payload bytes, and the next
`company_sequence` of its company, so the sequence stays gapless and in commit order and
consumers recognise a replayed event by its unchanged `ce_id`. The originals keep their
partition and offset. Chunks are committed one by one, walking the `status` index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from erpnext_streaming.constants import EVENT_LOG_TABLE, Status
from erpnext_streaming.outbox.records import (
	NO_CONTEXT,
	MessageContext,
	OutboxRecord,
	decode_payload,
)
from erpnext_streaming.outbox.write import write

_T = f"`{EVENT_LOG_TABLE}`"
DEFAULT_CHUNK_SIZE = 500
# every field of an outbox record is copied (a field added to OutboxRecord, such as how the
# drainer frames the value, travels with the copy); the copy starts Queued without error
_FRESH = ("status", "last_error")
_RECORD_FIELDS = tuple(f.name for f in dataclasses.fields(OutboxRecord) if f.name not in _FRESH)
_COPIED = ("name", *_RECORD_FIELDS)


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


def as_record(row: Any) -> OutboxRecord:
	"""The outbox record of a copy: the row's own values, the payload decoded back to bytes."""
	values = {field: row[field] for field in _RECORD_FIELDS}
	values["payload"] = decode_payload(row["payload"] or "")
	for field in ("company", "schema_name", "schema_fingerprint"):
		values[field] = values[field] or ""
	if values["message_key"] is None:
		values["message_key"] = values["company"]
	values["schema_version"] = values["schema_version"] or 0
	return OutboxRecord(**values)


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
	context: MessageContext = NO_CONTEXT,
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
		write(db, [as_record(r) for r in rows], now(), context)
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
