"""Requeue: Failed and Dead Event Log rows back into the delivery queue (bench streaming
requeue, the `requeue` API, the Event Log's list view).

A Failed row's event is still in its company's next bundle, so only that bundle becomes
due now. A Dead row's event left the queue, so it goes into a new bundle at the end of its
company's queue, drawn under the company's counter lock like a commit's bundle
(`write.lock_counters`), so bundles still follow commit order.

A row a drainer is copying to the dead-letter topic is leased: whether it still is, is read
against the database's clock (`mariadb.utc_now`), as every lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import bundles
from erpnext_streaming.outbox.mariadb import Database, placeholders, utc_now
from erpnext_streaming.outbox.outcomes import LEASE_IS_FREE, TABLE, companies_of, pending_names
from erpnext_streaming.outbox.records import NO_CONTEXT, SYSTEM_USER, MessageContext
from erpnext_streaming.outbox.write import lock_counters

REQUEUE_FILTER_FIELDS = frozenset(
	{
		"name",
		"status",
		"company",
		"topic",
		"event_type",
		"reference_doctype",
		"reference_name",
		"schema_name",
	}
)
_HAS_PAYLOAD = "COALESCE(`payload`, '') != ''"
NO_PAYLOAD_REASON = (
	"has no encoded event (its capture failed); fix the cause and emit the document again, "
	"e.g. with bench streaming backfill"
)
_CHUNK = 1000  # names per statement


class RequeueRefused(Exception):
	"""Nothing was requeued; `rows` lists (name, reason) for each offending row."""

	def __init__(self, message: str, rows: Sequence[tuple[Any, str]] = ()):
		super().__init__(message)
		self.message = message
		self.rows = list(rows)


def requeue_candidates(
	db: Database,
	filters: dict[str, Any],
	limit: int = 100000,
	since: datetime | None = None,
	after: int = 0,
) -> list[int]:
	"""Names (after `after`, at most `limit`, in order) of Failed/Dead rows matching
	`filters` ({field: value or [values]}, fields in REQUEUE_FILTER_FIELDS) and, with
	`since`, last changed (failed or died) at or after it, except rows a drainer is
	delivering right now. A status other than Failed or Dead is refused. Rows without an
	encoded event (written Dead because their capture failed) never match: publishing them
	would send an empty value. Callers walk large sets chunk by chunk with `after`."""
	conditions, values = _conditions(filters, utc_now(db), since)
	rows = db.sql(
		f"SELECT `name` FROM {TABLE} WHERE `name` > %s AND {conditions} ORDER BY `name` LIMIT %s",
		[after, *values, limit],
	)
	return [r[0] for r in rows]


def count_candidates(db: Database, filters: dict[str, Any], since: datetime | None = None) -> int:
	conditions, values = _conditions(filters, utc_now(db), since)
	return int(db.sql(f"SELECT COUNT(*) FROM {TABLE} WHERE {conditions}", values)[0][0])


def _conditions(filters: dict[str, Any], utc: datetime, since: datetime | None) -> tuple[str, list[Any]]:
	"""The WHERE conditions and their values; a row leased at `utc` (the database's now)
	never matches."""
	conditions = [f"`status` IN ({placeholders(Status.REQUEUEABLE)})", LEASE_IS_FREE, _HAS_PAYLOAD]
	values: list[Any] = [*Status.REQUEUEABLE, utc]
	if since is not None:
		conditions.append("`modified` >= %s")
		values.append(since)
	for field, value in filters.items():
		if field not in REQUEUE_FILTER_FIELDS:
			raise RequeueRefused(
				f"Cannot filter on {field!r}; use one of {', '.join(sorted(REQUEUE_FILTER_FIELDS))}"
			)
		options = list(value) if isinstance(value, list | tuple) else [value]
		if not options or not all(isinstance(o, str | int) for o in options):
			raise RequeueRefused(f"Filter {field!r} takes a value or a list of values")
		if field == "status" and not set(options) <= set(Status.REQUEUEABLE):
			raise RequeueRefused("Only Failed or Dead rows can be requeued")
		conditions.append(f"`{field}` IN ({placeholders(options)})")
		values.extend(options)
	return " AND ".join(conditions), values


def requeue(
	db: Database,
	names: Sequence[Any],
	now: datetime,
	user: str = SYSTEM_USER,
	context: MessageContext = NO_CONTEXT,
) -> list[int]:
	"""Failed/Dead -> Queued with a fresh attempt count, and back into the delivery queue
	(see the module doc; a Dead row's new bundle is built in `context`, as a commit's is).
	All or nothing: raises RequeueRefused if any row is missing, not Failed/Dead, leased by
	a drainer now, or has no encoded event (a capture failure)."""
	try:
		wanted = sorted({int(n) for n in names})
	except (TypeError, ValueError):
		raise RequeueRefused("Event Log names are numbers")
	if not wanted:
		return []
	found = _current_rows(db, wanted)
	refused = _refusals(wanted, found, utc_now(db))
	if refused:
		raise RequeueRefused("Nothing was requeued", refused)
	_mark_queued(db, wanted, now, user)
	_back_into_delivery(db, wanted, found, now, context, user)
	return wanted


def _current_rows(db: Database, wanted: Sequence[int]) -> dict[int, tuple]:
	"""{name: (status, lease owner, lease expiry, has payload, company)} of the rows that exist."""
	found = {}
	for start in range(0, len(wanted), _CHUNK):
		chunk = wanted[start : start + _CHUNK]
		for name, status, owner, expires, has_payload, company in db.sql(
			f"SELECT `name`, `status`, `lease_owner`, `lease_expires_at`, {_HAS_PAYLOAD}, `company` FROM {TABLE} "
			f"WHERE `name` IN ({placeholders(chunk)})",
			chunk,
		):
			found[name] = (status, owner, expires, has_payload, company)
	return found


def _refusals(wanted: Sequence[int], found: dict[int, tuple], utc: datetime) -> list[tuple[int, str]]:
	"""(name, reason) for every row that cannot be requeued (leased: at `utc`, the
	database's now)."""
	refused = []
	for name in wanted:
		if name not in found:
			refused.append((name, "does not exist"))
			continue
		status, owner, expires, has_payload, _ = found[name]
		if status not in Status.REQUEUEABLE:
			refused.append((name, f"is {status}; only Failed or Dead rows can be requeued"))
		elif owner and expires is not None and expires > utc:
			refused.append((name, "is being delivered right now; try again in a moment"))
		elif not has_payload:
			refused.append((name, NO_PAYLOAD_REASON))
	return refused


def _mark_queued(db: Database, wanted: Sequence[int], now: datetime, user: str) -> None:
	"""Queued with a fresh attempt count, no dead-letter mark and no lease (only rows still
	Failed or Dead: the condition is re-checked)."""
	for start in range(0, len(wanted), _CHUNK):
		chunk = wanted[start : start + _CHUNK]
		db.sql(
			f"UPDATE {TABLE} SET `status` = %s, `attempts` = 0, `next_attempt_at` = NULL, "
			"`dead_lettered_at` = NULL, `lease_owner` = NULL, `lease_expires_at` = NULL, "
			f"`modified` = %s, `modified_by` = %s WHERE `name` IN ({placeholders(chunk)}) "
			f"AND `status` IN ({placeholders(Status.REQUEUEABLE)})",
			[Status.QUEUED, now, user, *chunk, *Status.REQUEUEABLE],
		)


def _back_into_delivery(
	db: Database,
	wanted: Sequence[int],
	found: dict[int, tuple],
	now: datetime,
	context: MessageContext,
	user: str,
) -> None:
	"""Failed rows: their companies' next bundles are due now. Dead rows: new bundles,
	under the companies' counter locks."""
	failed = [found[name][4] for name in wanted if found[name][0] == Status.FAILED]
	bundles.retry_now(db, failed, now)
	dead = [name for name in wanted if found[name][0] == Status.DEAD]
	if dead:
		lock_counters(db, [found[name][4] for name in dead])
		bundles.queue_rows(db, dead, now, context, user=user)


def queue_pending(
	db: Database, now: datetime, context: MessageContext, chunk: int = 1000, before: datetime | None = None
) -> int:
	"""Bundles for every Queued or Failed row (created before `before`, if given) that no
	bundle holds; the rows queued. Such rows exist after an upgrade from the row-by-row
	drainer (patches/v1_0) or when a bundle's events line was unreadable; a commit writes its
	rows and their bundle at once, so a pending row of a consistent snapshot without a
	bundle is lost, never in progress.

	Under the companies' counter locks (as a commit's outbox write), so no commit of theirs
	slips in while their bundles are drawn."""
	names = pending_names(db, before)
	if names:
		bundled = bundles.bundled_names(db)
		names = [name for name in names if name not in bundled]
	if not names:
		return 0
	lock_counters(db, companies_of(db, names))
	return bundles.queue_rows(db, names, now, context, chunk)
