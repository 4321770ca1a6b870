"""Delivery outcomes on Event Log rows: Sent (with partition and offset), Failed, Dead,
dead-letter copies, their leases, and retention.

User transactions INSERT into this table all the time and nothing here may block them: the
drainer's session is READ COMMITTED (consistent reads, no gap locks), every UPDATE names its
rows by primary key and re-checks its condition, and claimers are serialized by a MariaDB
named lock, never by row locks. Row leases exist only for dead-letter copies; delivery
leases live on the cursors (delivery/bundles.py).

A row's lease and retry time (a Failed row's copy of its company's, shown on the desk) are
UTC from the database's clock, as the cursors' (delivery/bundles.py says why): the `utc`
values here; `modified`, `sent_at` and `dead_lettered_at` are the site's time (`now`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from erpnext_streaming.constants import EVENT_LOG_TABLE, Status
from erpnext_streaming.outbox.mariadb import Database, TransactionalDatabase, placeholders, read_committed
from erpnext_streaming.outbox.records import DELIVERY_COLUMNS, Lease, Published, Unsent, truncate_error

# Composite indexes beyond the JSON's single-column ones; the controller's
# on_doctype_update creates them (Frappe), harness/schema.py does the same in tests.
EVENT_LOG_INDEXES: dict[str, tuple[str, ...]] = {
	# Dead rows whose dead-letter copy is still pending
	"status_dead_lettered_at_index": ("status", "dead_lettered_at", "name"),
}
# an index no query reads any more; the upgrade patch drops it
OLD_PENDING_INDEX = "status_company_index"

CLAIMABLE = (Status.QUEUED, Status.FAILED)
TABLE = f"`{EVENT_LOG_TABLE}`"
_SELECT_DELIVERY = "SELECT {} FROM {}".format(", ".join(f"`{c}`" for c in DELIVERY_COLUMNS), TABLE)
# a row in flight (any unexpired lease, the claimer's own included) is never claimed again;
# its one parameter is the database's UTC now
LEASE_IS_FREE = (
	"(`lease_owner` IS NULL OR `lease_owner` = '' OR `lease_expires_at` IS NULL OR `lease_expires_at` <= %s)"
)
_LEASE_CLEARED = {"lease_owner": None, "lease_expires_at": None}
# the rows' partitions and offsets as a table: one JSON parameter, joined by primary key
_POSITIONS_TABLE = (
	"JSON_TABLE(%s, '$[*]' COLUMNS (`name` BIGINT PATH '$[0]', `kafka_partition` INT PATH '$[1]', "
	"`kafka_offset` BIGINT PATH '$[2]')) AS `p`"
)


def settle_positions(db: Database, positions: str, sent_at: datetime, now: datetime) -> None:
	"""Mark delivered rows Sent with their partition and offset: ONE statement for a
	receipt's `positions` (its JSON, [[name, partition, offset], ...], passed through as is).

	Only Queued or Failed rows change: the message is in Kafka whatever drainer sent it, and
	a row requeued since (Queued again) is sent again, at least once."""
	common = {"status": Status.SENT, "sent_at": sent_at, "modified": now, "next_attempt_at": None}
	_update_positions(db, positions, {**common, **_LEASE_CLEARED}, "t.`status` IN (%s, %s)", CLAIMABLE)


def mark_unsent(db: Database, rows: Sequence[Unsent], now: datetime) -> None:
	"""Record Failed / Dead outcomes of pending rows (of companies the drainer still
	leases, `bundles.still_leased`): ONE statement. A Failed row's `next_attempt_at` is its
	company's retry time (UTC, as on its cursor)."""
	if not rows:
		return
	per_row: dict[str, dict[Any, Any]] = {
		"status": {r.name: r.status for r in rows},
		"attempts": {r.name: r.attempts for r in rows},
		"next_attempt_at": {r.name: r.next_attempt_at for r in rows},
		"last_error": {r.name: truncate_error(r.last_error) for r in rows},
	}
	lettered = [r for r in rows if r.dead_letter]
	if lettered:
		per_row["dead_lettered_at"] = {r.name: now for r in lettered}
		per_row["kafka_partition"] = {r.name: r.dead_letter.partition for r in lettered}
		per_row["kafka_offset"] = {r.name: r.dead_letter.offset for r in lettered}
	_update_rows(db, per_row, {"modified": now, **_LEASE_CLEARED}, "`status` IN (%s, %s)", CLAIMABLE)


def mark_dead_lettered(db: Database, copies: Sequence[Published], now: datetime) -> None:
	"""Dead rows whose copy reached the dead-letter topic: ONE statement."""
	if copies:
		common = {"dead_lettered_at": now, "modified": now, **_LEASE_CLEARED}
		condition = "t.`status` = %s AND t.`dead_lettered_at` IS NULL"
		_update_positions(db, positions_json(copies), common, condition, [Status.DEAD])


def positions_json(published: Sequence[Published]) -> str:
	"""[[name, partition, offset], ...]: a receipt's `positions`, read by `_update_positions`."""
	return json.dumps([[int(p.name), p.partition, p.offset] for p in published], separators=(",", ":"))


def claim_dead_letters(db: Database, lease: Lease, utc: datetime, limit: int) -> list[Any]:
	"""Lease Dead rows whose dead-letter copy is pending (capture failures, or copies that
	could not be sent when the row died) and not leased at `utc`, until `lease.until`
	(both UTC, the database's clock)."""
	names = [
		r[0]
		for r in db.sql(
			f"SELECT `name` FROM {TABLE} WHERE `status` = %s AND `dead_lettered_at` IS NULL "
			f"AND {LEASE_IS_FREE} ORDER BY `name` LIMIT %s",
			(Status.DEAD, utc, limit),
		)
	]
	if not names:
		return []
	db.sql(
		f"UPDATE {TABLE} SET `lease_owner` = %s, `lease_expires_at` = %s WHERE `name` IN ({placeholders(names)}) "
		f"AND `status` = %s AND `dead_lettered_at` IS NULL AND {LEASE_IS_FREE}",
		[lease.owner, lease.until, *names, Status.DEAD, utc],
	)
	return list(
		db.sql(
			f"{_SELECT_DELIVERY} WHERE `name` IN ({placeholders(names)}) AND `lease_owner` = %s "
			"AND `lease_expires_at` = %s ORDER BY `name`",
			[*names, lease.owner, lease.until],
			as_dict=True,
		)
	)


def release_leases(db: Database, owner: str, names: Sequence[Any]) -> None:
	if names:
		db.sql(
			f"UPDATE {TABLE} SET `lease_owner` = NULL, `lease_expires_at` = NULL "
			f"WHERE `name` IN ({placeholders(names)}) AND `lease_owner` = %s",
			[*names, owner],
		)


def lease_owners(db: Database, utc: datetime) -> set[str]:
	"""The drainers leasing rows (dead-letter copies in flight) at `utc` (the database's now)."""
	return {
		r[0]
		for r in db.sql(f"SELECT DISTINCT `lease_owner` FROM {TABLE} WHERE `lease_expires_at` > %s", (utc,))
		if r[0]
	}


def release_owner(db: Database, owner: str, utc: datetime) -> None:
	"""Free every row lease of `owner` (a drainer known to be dead) not expired at `utc`
	(the database's now; the expired ones are `release_expired_leases`')."""
	db.sql(
		f"UPDATE {TABLE} SET `lease_owner` = NULL, `lease_expires_at` = NULL "
		"WHERE `lease_expires_at` > %s AND `lease_owner` = %s",
		(utc, owner),
	)


def release_expired_leases(db: Database, utc: datetime) -> list[Any]:
	"""Clear leases expired at `utc` (the database's now; a drainer died); returns the rows
	released. Idempotent."""
	names = [
		r[0]
		for r in db.sql(
			f"SELECT `name` FROM {TABLE} WHERE `lease_expires_at` <= %s ORDER BY `name` LIMIT 10000",
			(utc,),
		)
	]
	if names:
		db.sql(
			f"UPDATE {TABLE} SET `lease_owner` = NULL, `lease_expires_at` = NULL "
			f"WHERE `name` IN ({placeholders(names)}) AND `lease_expires_at` <= %s",
			[*names, utc],
		)
	return names


def dead_letters_pending(db: Database, utc: datetime) -> bool:
	"""Is there a Dead row whose dead-letter copy is pending and not in flight at `utc` (the
	database's now)?"""
	return bool(
		db.sql(
			f"SELECT 1 FROM {TABLE} WHERE `status` = %s AND `dead_lettered_at` IS NULL AND {LEASE_IS_FREE} LIMIT 1",
			(Status.DEAD, utc),
		)
	)


def pending_names(db: Database, before: datetime | None = None) -> list[int]:
	"""Every Queued or Failed row (created before `before`, if given), in name order."""
	created = " AND `creation` < %s" if before else ""
	return [
		r[0]
		for r in db.sql(
			f"SELECT `name` FROM {TABLE} WHERE `status` IN (%s, %s){created} ORDER BY `name`",
			[*CLAIMABLE, *([before] if before else [])],
		)
	]


def companies_of(db: Database, names: Sequence[Any]) -> list[str]:
	"""The distinct companies of the rows `names`."""
	found: set[str] = set()
	for start in range(0, len(names), 1000):
		chunk = list(names[start : start + 1000])
		rows = db.sql(
			f"SELECT DISTINCT `company` FROM {TABLE} WHERE `name` IN ({placeholders(chunk)})", chunk
		)
		found.update(r[0] or "" for r in rows)
	return sorted(found)


def delivery_rows(db: Database, names: Sequence[Any]) -> list[Any]:
	"""The rows `names` (DELIVERY_COLUMNS), in name order: what a dead-letter copy is built from."""
	if not names:
		return []
	return list(
		db.sql(
			f"{_SELECT_DELIVERY} WHERE `name` IN ({placeholders(names)}) ORDER BY `name`",
			list(names),
			as_dict=True,
		)
	)


def clear_old_logs(
	db: TransactionalDatabase, days: int, now: datetime | None = None, chunk: int = 5000
) -> int:
	"""Delete Sent rows last modified more than `days` ago; the number deleted. Queued,
	Failed and Dead rows stay: pending events are not delivered yet, and a dead letter stays
	until someone resolves it (requeued rows become Sent and age out; see Repost Item
	Valuation for the same rule).

	In chunks walked by primary key, each its own READ COMMITTED transaction: one DELETE of
	a month under REPEATABLE READ would hold next-key locks over the range the users'
	outbox INSERTs need, and one huge undo log."""
	cutoff = (now or datetime.now()) - timedelta(days=days)
	deleted, after = 0, 0
	with read_committed(db):
		while names := [
			r[0]
			for r in db.sql(
				f"SELECT `name` FROM {TABLE} WHERE `name` > %s AND `status` = %s AND `modified` < %s "
				"ORDER BY `name` LIMIT %s",
				(after, Status.SENT, cutoff, chunk),
			)
		]:
			db.sql(
				f"DELETE FROM {TABLE} WHERE `name` IN ({placeholders(names)}) AND `status` = %s AND `modified` < %s",
				[*names, Status.SENT, cutoff],
			)
			db.commit()
			deleted, after = deleted + len(names), names[-1]
	return deleted


# -- one UPDATE for many rows ----------------------------------------------------------


def _update_rows(
	db: Database,
	per_row: dict[str, dict[Any, Any]],
	common: dict[str, Any],
	condition: str,
	condition_values: Sequence[Any],
) -> None:
	"""ONE UPDATE of the rows named in `per_row`'s values: per-row values through
	`CASE name WHEN n1 THEN v1 ... ELSE column END`, `common` values for all, only where
	`condition` (re-checked) holds."""
	names = list(dict.fromkeys(name for by_name in per_row.values() for name in by_name))
	assignments, values = [], []
	for column, by_name in per_row.items():
		cases = " ".join(["WHEN %s THEN %s"] * len(by_name))
		assignments.append(f"`{column}` = CASE `name` {cases} ELSE `{column}` END")
		values += [v for pair in by_name.items() for v in pair]
	assignments += [f"`{column}` = %s" for column in common]
	db.sql(
		f"UPDATE {TABLE} SET {', '.join(assignments)} WHERE `name` IN ({placeholders(names)}) AND {condition}",
		[*values, *common.values(), *names, *condition_values],
	)


def _update_positions(
	db: Database,
	positions: str,
	common: dict[str, Any],
	condition: str,
	condition_values: Sequence[Any],
) -> None:
	"""ONE UPDATE that sets each row's partition and offset from `positions` (a JSON_TABLE joined on the
	primary key: linear in the rows, where a CASE per column is quadratic) and `common`
	values, only where `condition` (re-checked, on columns of `t`) holds."""
	assignments = ["t.`kafka_partition` = p.`kafka_partition`", "t.`kafka_offset` = p.`kafka_offset`"]
	assignments += [f"t.`{column}` = %s" for column in common]
	db.sql(
		f"UPDATE {TABLE} AS t JOIN {_POSITIONS_TABLE} ON t.`name` = p.`name` "
		f"SET {', '.join(assignments)} WHERE {condition}",
		[positions, *common.values(), *condition_values],
	)
