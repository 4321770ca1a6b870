"""The delivery queue: bundles, per-company cursors and receipts (docs/architecture.md,
"The delivery queue", "Claims, leases and locks").

The outbox writes ONE bundle per company per transaction, its events as ready messages,
because reading and updating one Event Log row per event cost the database more than
everything else the drainer does. The drainer claims bundles after each company's cursor,
records a delivered batch as one receipt plus the cursor moves, and settles receipts into
the Event Log (rows Sent) off the delivery path. User transactions only INSERT bundles, and
the drainer touches cursors, receipts and bundles by primary key under READ COMMITTED, so
nothing here waits on a user transaction. Companies are matched in SQL, under the database's
collation (`outbox.records.bucket`), never in Python.

Leases and retry times (`lease_expires_at`, `next_attempt_at`) are UTC from the database's
clock (`mariadb.utc_now`): the `utc` and `until` values here come from it, so drainers and
the sweeper on hosts with different clocks, time zones or DST agree on them, as on the
Event Log rows' (`outbox.outcomes`). `creation`, `modified` and the Event Log's other times
are Frappe's site-local time (`now`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from erpnext_streaming.constants import (
	BUNDLE_SEQUENCE,
	BUNDLE_TABLE,
	CURSOR_TABLE,
	RECEIPT_SEQUENCE,
	RECEIPT_TABLE,
)
from erpnext_streaming.outbox.mariadb import (
	Database,
	chunks_by_bytes,
	get_lock,
	lock_name,
	placeholders,
	release_lock,
	statement_budget,
	value_bytes,
)
from erpnext_streaming.outbox.outcomes import delivery_rows, positions_json, settle_positions
from erpnext_streaming.outbox.records import (
	SEQUENCE_TABLE,
	SYSTEM_USER,
	MessageContext,
	Published,
	bucket,
	truncate_error,
)

# each company's bundles in name order, with their sizes: the claim chooses its batch from
# this index alone (the rows, with their messages, are read only for the bundles taken)
BUNDLE_INDEXES: dict[str, tuple[str, ...]] = {"company_name_index": ("company", "name", "events")}
# under sustained load, settle at least this often (a chunk at a time)
SETTLE_AFTER_SECONDS = 30.0
# receipts settled per statement batch (each holds one delivered batch's positions)
SETTLE_RECEIPTS = 20

_B, _C, _R = f"`{BUNDLE_TABLE}`", f"`{CURSOR_TABLE}`", f"`{RECEIPT_TABLE}`"
_STANDARD = "`creation`, `modified`, `modified_by`, `owner`, `docstatus`, `idx`"


# -- writing (in the user's transaction) ----------------------------------------------


def write(
	db: Database,
	rows: Sequence[Any],
	now: datetime,
	context: MessageContext,
	user: str,
	keys: Mapping[str, str] | None = None,
) -> None:
	"""The bundles of `rows` (Event Log rows in name order, the Queued ones of one
	transaction): per company its events in the rows' order, in one bundle, or in several
	consecutive ones when they would not fit half a statement (`statement_budget`); the
	bundles in as few multi-row INSERTs as fit. Called by `outbox.write` while it holds the
	companies' counter rows, so each company's bundles follow commit order.

	`keys` ({bucket: bundle company}) puts the buckets the database holds as one name
	("Acme", "ACME ": one counter row, one cursor) into the same bundles: as separate
	bundles their events would be delivered out of sequence order (all of one, then the
	other)."""
	from erpnext_streaming.delivery.messages import bundle

	keys = keys or {}
	by_company: dict[str, list] = {}
	for row in rows:
		company = bucket(row["company"])
		by_company.setdefault(keys.get(company, company), []).append(row)
	budget = statement_budget(db)
	bundled = [
		(company, len(part), bundle(part, context.site, context.time_zone))
		for company, of_company in by_company.items()
		for part in chunks_by_bytes(of_company, _event_bytes, budget // 2)
	]
	for chunk in chunks_by_bytes(bundled, lambda b: value_bytes(b[2]) + 256, budget):
		values = [v for company, events, text in chunk for v in (now, now, user, user, company, events, text)]
		db.sql(
			f"INSERT INTO {_B} (`name`, {_STANDARD}, `company`, `events`, `messages`) VALUES "
			+ ", ".join([f"(NEXTVAL(`{BUNDLE_SEQUENCE}`), %s, %s, %s, %s, 0, 0, %s, %s, %s)"] * len(chunk)),
			values,
		)


def _event_bytes(row: Any) -> int:
	"""About what an event adds to its bundle's text: its value and its JSON line."""
	payload = row["payload"] or b""
	return len(payload) + 256 + len(str(row["reference_name"] or "")) * 4


def queue_rows(
	db: Database,
	names: Sequence[int],
	now: datetime,
	context: MessageContext,
	chunk: int = 1000,
	user: str = SYSTEM_USER,
) -> int:
	"""Bundles for existing Event Log rows `names` (in name order): requeued Dead rows, and
	the pending rows the upgrade patch finds without a bundle. The caller holds the companies' counter
	locks (or nothing commits meanwhile), so the bundles follow commit order."""
	for start in range(0, len(names), chunk):
		rows = delivery_rows(db, names[start : start + chunk])
		write(db, rows, now, context, user, _counter_rows(db, rows))
	return len(names)


def _counter_rows(db: Database, rows: Sequence[Any]) -> dict[str, str]:
	"""{bucket: the name of its counter row} for the companies of `rows` (see `write`):
	the database, not Python, says which names are one."""
	companies = sorted({bucket(r["company"]) for r in rows})
	if len(companies) < 2:
		return {}
	return dict(
		db.sql(
			" UNION ALL ".join(
				[f"SELECT %s, `name` FROM `{SEQUENCE_TABLE}` WHERE `name` = %s"] * len(companies)
			),
			[v for company in companies for v in (company, company)],
		)
	)


def bundled_names(db: Database) -> set[int]:
	"""The Event Log names in any bundle (the upgrade patch skips them)."""
	from erpnext_streaming.delivery.messages import refs

	names: set[int] = set()
	for (messages,) in db.sql(f"SELECT `messages` FROM {_B}"):
		if messages:
			names.update(refs(messages))
	return names


# -- claiming -------------------------------------------------------------------------


@dataclass(slots=True)
class Claimed:
	"""A claimed bundle: `cursor` is its company's cursor name, `attempts` how often the
	company's next bundle was tried before, `messages` its text (`messages.bundle`, format 3)."""

	name: int
	cursor: str
	events: int
	messages: str
	attempts: int = 0


def _open(db: Database, owner: str, utc: datetime) -> Iterator[tuple[str, dict]]:
	"""(cursor, its row) of every company with bundles that `owner` may deliver at `utc`:
	leased by nobody else (or the lease expired) and not waiting for a retry. A company
	without a cursor yet (None fields) is named by its bundles' `company`."""
	for row in db.sql(
		f"SELECT g.`company`, c.`name` AS `cursor`, c.`delivered_through`, c.`attempts`, c.`next_attempt_at`, "
		f"c.`lease_owner`, c.`lease_expires_at` FROM (SELECT `company` FROM {_B} GROUP BY `company`) AS g "
		f"LEFT JOIN {_C} AS c ON c.`name` = g.`company`",
		as_dict=True,
	):
		holder, expires, due = row["lease_owner"], row["lease_expires_at"], row["next_attempt_at"]
		if (not holder or holder == owner or expires is None or expires <= utc) and (
			due is None or due <= utc
		):
			yield row["cursor"] or row["company"], row


def claim(
	db: Database,
	owner: str,
	until: datetime,
	utc: datetime,
	limit: int,
	after: Mapping[str, int] | None = None,
	now: datetime | None = None,
) -> list[Claimed]:
	"""Lease the companies that have bundles to deliver and return up to about `limit`
	events' worth of their bundles, in name order: per company a prefix of its bundles
	after its cursor or, for the companies in `after` ({cursor: last bundle}) that this
	claimer leased all along, after the bundles it claimed before (in flight, or delivered
	and not recorded yet). A company leased by another drainer, or whose next bundle waits
	for its retry (`next_attempt_at`), yields nothing. `utc` (now) and `until` (the lease's
	end) are the database's UTC; `now` (default `utc`) the site's time for a new
	cursor's `creation`. Run it under the claim lock, in a transaction the caller commits."""
	if limit <= 0:
		return []
	after = after or {}
	open_ = []
	held: set[str] = set()
	for key, row in _open(db, owner, utc):
		start = row["delivered_through"] or 0
		if row["lease_owner"] == owner:  # held all along: nobody else delivered after its claims
			start = max(start, after.get(key, 0))
			expires = row["lease_expires_at"]
			if expires is not None and expires > utc + (until - utc) / 2:
				held.add(key)  # for more than half a lease yet: not written again (see below)
		open_.append((key, start, row["attempts"] or 0))
	if not open_:
		return []
	per_company = max(-(-limit // len(open_)), min(limit, 100))
	values = [v for key, start, _ in open_ for v in (key, start, per_company)]
	batch = db.sql(_choose(len(open_)), [*values, per_company, limit])
	if not batch:
		return []
	# a lease this claimer holds for long yet is not written again, and the others are
	# written in one order everywhere (`_cursor_order`), as two orders could deadlock
	leased = sorted({open_[row[0]][0] for row in batch} - held, key=_cursor_order)
	if leased:
		now = now or utc
		db.sql(
			f"INSERT INTO {_C} (`name`, {_STANDARD}, `company`, `delivered_through`, `attempts`, `lease_owner`, "
			"`lease_expires_at`) VALUES "
			+ ", ".join(["(%s, %s, %s, %s, %s, 0, 0, %s, 0, 0, %s, %s)"] * len(leased))
			+ " ON DUPLICATE KEY UPDATE `lease_owner` = VALUES(`lease_owner`), "
			"`lease_expires_at` = VALUES(`lease_expires_at`)",
			[v for key in leased for v in (key, now, now, SYSTEM_USER, SYSTEM_USER, key, owner, until)],
		)
	# the first of a company's claimed bundles carries its retry state; those after it are new
	claimed, seen = [], set()
	for group, name, events, messages in batch:
		key, _, attempts = open_[group]
		claimed.append(Claimed(name, key, events, messages, attempts if group not in seen else 0))
		seen.add(group)
	return claimed


def _choose(companies: int) -> str:
	"""The claim's one statement: per company (`g`, in the order of the values) its
	bundles after its start, in name order, a prefix of at most `per_company` events (at
	least one bundle), and of those, in name order, about `limit` events in all (at least
	one bundle); with their messages, read only for the bundles taken. Values: (company,
	start, per_company) per company, then per_company and limit.

	Chosen from the index (company, name, events) alone, by running sums (window
	functions): each company's scan stops after `per_company` bundles, and only the taken
	bundles' rows are read (a bundle holds its events' messages: most of what the claim
	reads)."""
	heads = " UNION ALL ".join(
		f"(SELECT {g} AS `g`, `name`, `events` FROM {_B} FORCE INDEX (`company_name_index`) "
		"WHERE `company` = %s AND `name` > %s ORDER BY `name` LIMIT %s)"
		for g in range(companies)
	)
	return (
		"SELECT t.`g`, t.`name`, t.`events`, b.`messages` FROM ("
		"SELECT `g`, `name`, `events`, SUM(`events`) OVER (ORDER BY `name`) AS `total` FROM ("
		"SELECT `g`, `name`, `events`, SUM(`events`) OVER (PARTITION BY `g` ORDER BY `name`) AS `upto` "
		f"FROM ({heads}) AS u) AS h WHERE h.`upto` = h.`events` OR h.`upto` <= %s) AS t "
		f"JOIN {_B} AS b ON b.`name` = t.`name` WHERE t.`total` = t.`events` OR t.`total` <= %s "
		"ORDER BY t.`name`"
	)


# -- leases ---------------------------------------------------------------------------


def still_leased(db: Database, owner: str, cursors: Iterable[str]) -> set[str]:
	"""The cursors among `cursors` that `owner` still leases (another drainer may have taken
	a company whose lease expired: its rows are that drainer's to mark)."""
	names = list(dict.fromkeys(cursors))
	if not names:
		return set()
	# the names come from this table (or created it, `claim`), so they match exactly
	return {
		r[0]
		for r in db.sql(
			f"SELECT `name` FROM {_C} WHERE `name` IN ({placeholders(names)}) AND `lease_owner` = %s",
			[*names, owner],
		)
	}


def renew(db: Database, owner: str, cursors: Iterable[str], until: datetime) -> set[str]:
	"""Extend `owner`'s leases on `cursors` to `until` (UTC); the cursors it still held."""
	names = list(dict.fromkeys(cursors))
	held = still_leased(db, owner, names)
	if held:
		db.sql(
			f"UPDATE {_C} SET `lease_expires_at` = %s WHERE `name` IN ({placeholders(list(held))}) AND `lease_owner` = %s",
			[until, *held, owner],
		)
	return held


def release(db: Database, owner: str, cursors: Iterable[str] | None = None) -> None:
	"""Give up `owner`'s leases (on `cursors`, or all of them)."""
	names = list(dict.fromkeys(cursors)) if cursors is not None else None
	if names == []:
		return
	condition = f" AND `name` IN ({placeholders(names)})" if names else ""
	db.sql(
		f"UPDATE {_C} SET `lease_owner` = NULL, `lease_expires_at` = NULL WHERE `lease_owner` = %s{condition}",
		[owner, *(names or [])],
	)


def lease_owners(db: Database) -> set[str]:
	"""The drainers holding a company's lease now (one cursor row per company)."""
	return {r[0] for r in db.sql(f"SELECT DISTINCT `lease_owner` FROM {_C} WHERE `lease_owner` IS NOT NULL")}


def release_expired(db: Database, utc: datetime) -> list[str]:
	"""Clear leases expired at `utc` (the database's now, `mariadb.utc_now`; their drainer
	died); the cursors released. Idempotent."""
	names = [r[0] for r in db.sql(f"SELECT `name` FROM {_C} WHERE `lease_expires_at` <= %s", (utc,))]
	if names:
		db.sql(
			f"UPDATE {_C} SET `lease_owner` = NULL, `lease_expires_at` = NULL "
			f"WHERE `name` IN ({placeholders(names)}) AND `lease_expires_at` <= %s",
			[*names, utc],
		)
	return names


# -- outcomes -------------------------------------------------------------------------


def record_delivered(
	db: Database, sent: Sequence[Published], through: Mapping[str, int], now: datetime
) -> None:
	"""A delivered batch: ONE receipt with each event's partition and offset, and the
	cursors moved past the delivered bundles (`through`: {cursor: last bundle}) with their
	retry state cleared. Never moves a cursor back (a late drainer's mark)."""
	if sent:
		db.sql(
			f"INSERT INTO {_R} (`name`, {_STANDARD}, `events`, `positions`) "
			f"VALUES (NEXTVAL(`{RECEIPT_SEQUENCE}`), %s, %s, %s, %s, 0, 0, %s, %s)",
			(now, now, SYSTEM_USER, SYSTEM_USER, len(sent), positions_json(sent)),
		)
	if through:
		# columns are assigned left to right: the retry state first, while `delivered_through`
		# still holds the old value
		forward = "VALUES(`delivered_through`) > `delivered_through`"
		db.sql(
			f"INSERT INTO {_C} (`name`, {_STANDARD}, `company`, `delivered_through`, `attempts`) VALUES "
			+ ", ".join(["(%s, %s, %s, %s, %s, 0, 0, %s, %s, 0)"] * len(through))
			+ f" ON DUPLICATE KEY UPDATE `attempts` = IF({forward}, 0, `attempts`), "
			f"`next_attempt_at` = IF({forward}, NULL, `next_attempt_at`), "
			f"`last_error` = IF({forward}, '', `last_error`), `modified` = VALUES(`modified`), "
			"`delivered_through` = GREATEST(`delivered_through`, VALUES(`delivered_through`))",
			[
				v
				for key, last in sorted(through.items(), key=lambda kv: _cursor_order(kv[0]))
				for v in (key, now, now, SYSTEM_USER, SYSTEM_USER, key, last)
			],
		)


def _cursor_order(name: str) -> str:
	"""The order in which a statement writes several cursor rows: near the database's own
	(its collation ignores case and trailing spaces), which `UPDATE ... WHERE name IN`
	follows, so no two statements lock cursors in opposite orders."""
	return name.casefold().rstrip()


def record_retry(
	db: Database, owner: str, cursor: str, attempts: int, next_attempt_at: datetime, error: str, now: datetime
) -> None:
	"""The company's next bundle failed: its attempts and when to try again (UTC, the
	database's clock; only while `owner` leases it)."""
	db.sql(
		f"UPDATE {_C} SET `attempts` = %s, `next_attempt_at` = %s, `last_error` = %s, `modified` = %s "
		"WHERE `name` = %s AND `lease_owner` = %s",
		(attempts, next_attempt_at, truncate_error(error), now, cursor, owner),
	)


def retry_now(db: Database, companies: Iterable[str], now: datetime) -> None:
	"""Requeued Failed events: their companies' next bundles are due now, with a fresh
	attempt count."""
	names = list(dict.fromkeys(bucket(c) for c in companies))
	if names:
		db.sql(
			f"UPDATE {_C} SET `attempts` = 0, `next_attempt_at` = NULL, `modified` = %s "
			f"WHERE `name` IN ({placeholders(names)})",
			[now, *names],
		)


# -- settling -------------------------------------------------------------------------


def settle(db: Database, now: datetime, receipts: int = SETTLE_RECEIPTS) -> int:
	"""Apply up to `receipts` receipts to the Event Log (their rows Sent with partition and
	offset, `sent_at` the receipt's time), delete them, and delete the bundles every cursor
	has passed. Returns the events settled. Runs in the caller's transaction; one settler at
	a time (a named lock: the drainer and the sweeper would only redo each other's work),
	another returns 0 at once."""
	lock = lock_name(db, "settle")
	if not get_lock(db, lock, 0):
		return 0
	try:
		found = db.sql(
			f"SELECT `name`, `creation`, `positions`, `events` FROM {_R} ORDER BY `name` LIMIT %s",
			(receipts,),
		)
		for _, created, positions, _ in found:
			settle_positions(db, positions, created, now)
		if found:
			names = [r[0] for r in found]
			db.sql(f"DELETE FROM {_R} WHERE `name` IN ({placeholders(names)})", names)
		# per company through its index, so the delete locks only that company's passed bundles
		for cursor, through in db.sql(
			f"SELECT `name`, `delivered_through` FROM {_C} WHERE `delivered_through` > 0"
		):
			db.sql(f"DELETE FROM {_B} WHERE `company` = %s AND `name` <= %s", (cursor, through))
		return sum(r[3] or 0 for r in found)
	finally:
		release_lock(db, lock)


def oldest_undelivered(db: Database) -> datetime | None:
	"""When the oldest bundle not delivered yet was written (its company's cursor is before it)."""
	return db.sql(
		f"SELECT MIN(b.`creation`) FROM {_B} AS b LEFT JOIN {_C} AS c ON c.`name` = b.`company` "
		"WHERE b.`name` > COALESCE(c.`delivered_through`, 0)"
	)[0][0]


# -- what is left to do ---------------------------------------------------------------


def deliverable(db: Database, utc: datetime) -> bool:
	"""Does any company have a bundle after its cursor that is due and not leased by a
	live drainer at `utc` (the database's now)?"""
	for key, row in _open(db, "", utc):
		if db.sql(
			f"SELECT 1 FROM {_B} WHERE `company` = %s AND `name` > %s LIMIT 1",
			(key, row["delivered_through"] or 0),
		):
			return True
	return False


def next_attempt_due(db: Database) -> datetime | None:
	"""The earliest retry of a company's next bundle (UTC, the database's clock)."""
	return db.sql(f"SELECT MIN(`next_attempt_at`) FROM {_C}")[0][0]
