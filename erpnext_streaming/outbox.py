"""The transactional outbox: Streaming Event Log rows written inside the user's transaction.

All SQL against `tabStreaming Event Log` and `tabStreaming Company Sequence` lives here.
Functions take a `db` with Frappe's `frappe.db.sql(query, values, as_dict=...)` shape
(Frappe's own `frappe.db` in production; PyMySQL behind the test stand-in) and a `now`
from the caller, so the module has no Frappe import and times follow Frappe's
`now_datetime()` (system time zone), like the `modified` column Frappe writes.

Writing a transaction's events costs six statements whatever the number of events:
1. a savepoint (the write is all or nothing inside the user's transaction),
2. one upsert of the per-company counters (companies sorted, so concurrent transactions
   lock them in the same order and cannot deadlock on them),
3. one read of the new counter values,
4. the rows' names, drawn from the Event Log's sequence in one statement,
5. one multi-row INSERT of the events,
6. one multi-row INSERT of their delivery bundles, one per company, holding its events
   as ready messages (delivery/bundles.py: what the drainer reads instead of the rows).
The counter rows stay locked until COMMIT, so two transactions with events of the same
company commit one after the other: for every company, name order, company_sequence
order, bundle order and commit order agree, and the sequence has no gaps (a consumer can
detect loss).
Counter rows are keyed under the database's collation: names that differ only in case or
trailing spaces are one row, and their events share its sequence.
The lock is taken in before_commit, after all of ERPNext's own work, and held only for
the insert and the COMMIT.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol

from erpnext_streaming.constants import EVENT_LOG_SEQUENCE, EVENT_LOG_TABLE, Encoding, Status

SEQUENCE_TABLE = "tabStreaming Company Sequence"
# tabStreaming Company Sequence.name of events without a company (a Frappe name cannot be empty)
NO_COMPANY_BUCKET = "-"
LAST_ERROR_LIMIT = 2000
SYSTEM_USER = "Administrator"


@dataclass(frozen=True, slots=True)
class MessageContext:
	"""What a message's headers say beyond the row: the site (`ce_source`) and its time
	zone (`ce_time`'s offset). Frappe glue: `emitters.handler.message_context()`."""

	site: str = ""
	time_zone: tzinfo = UTC


NO_CONTEXT = MessageContext()


class Database(Protocol):
	"""The part of `frappe.db` the outbox uses."""

	def sql(self, query: str, values: Any = (), as_dict: bool = False) -> Any: ...


@dataclass(slots=True)
class OutboxRecord:
	"""One event ready for the outbox: identity, routing, schema and the encoded bytes."""

	event_id: str
	event_type: str
	reference_doctype: str
	reference_name: str
	company: str
	event_time: datetime | None
	topic: str
	message_key: str
	schema_name: str
	schema_version: int
	schema_fingerprint: str
	payload: bytes
	status: str = Status.QUEUED
	last_error: str = ""
	encoding: str = Encoding.DEFAULT  # how the drainer frames it (constants.Encoding)


_COLUMNS = (
	"name",
	"creation",
	"modified",
	"modified_by",
	"owner",
	"docstatus",
	"idx",
	"event_id",
	"status",
	"event_type",
	"reference_doctype",
	"reference_name",
	"company",
	"event_time",
	"topic",
	"message_key",
	"company_sequence",
	"schema_name",
	"schema_version",
	"schema_fingerprint",
	"encoding",
	"attempts",
	"payload",
	"last_error",
)
_INSERT_HEAD = "INSERT INTO `{}` ({}) VALUES ".format(EVENT_LOG_TABLE, ", ".join(f"`{c}`" for c in _COLUMNS))
_ROW = "({})".format(", ".join(["%s"] * len(_COLUMNS)))
_SAVEPOINT = "erpnext_streaming_outbox"


def bucket(company: str) -> str:
	return company or NO_COMPANY_BUCKET


def allocate_sequences(
	db: Database, records: Sequence[OutboxRecord], now: datetime
) -> dict[str, Iterator[int]]:
	"""Reserve consecutive per-company sequence numbers; the next numbers of each bucket.

	The counters are rows keyed by company under the database's collation, which holds
	names that differ only in case or trailing spaces ("Acme", "ACME ") as ONE row: such
	buckets share that row's numbers, so its sequence stays gapless and unique.
	"""
	counts = Counter(bucket(r.company) for r in records)
	companies = sorted(counts)
	db.sql(
		f"INSERT INTO `{SEQUENCE_TABLE}` (`name`, `company`, `last_sequence`, `creation`, `modified`, "
		"`modified_by`, `owner`, `docstatus`, `idx`) VALUES "
		+ ", ".join(["(%s, %s, %s, %s, %s, %s, %s, 0, 0)"] * len(companies))
		+ " ON DUPLICATE KEY UPDATE `last_sequence` = `last_sequence` + VALUES(`last_sequence`), "
		"`modified` = VALUES(`modified`)",
		[v for name in companies for v in (name, name, counts[name], now, now, SYSTEM_USER, SYSTEM_USER)],
	)
	stored = {
		requested: (row, last)
		for requested, row, last in db.sql(
			" UNION ALL ".join(
				[f"SELECT %s, `name`, `last_sequence` FROM `{SEQUENCE_TABLE}` WHERE `name` = %s"]
				* len(companies)
			),
			[v for name in companies for v in (name, name)],
		)
	}
	reserved = Counter()
	for name in companies:
		reserved[stored[name][0]] += counts[name]
	numbers = {row: itertools.count(last - reserved[row] + 1) for row, last in stored.values()}
	return {name: numbers[stored[name][0]] for name in companies}


ER_NO_SUCH_TABLE = 1146  # Table '...' doesn't exist
ER_LOCK_DEADLOCK = 1213  # the victim's whole transaction was rolled back


def is_mariadb_error(error: BaseException, number: int) -> bool:
	"""Is `error` (or what it was raised from) MariaDB's error `number`? PyMySQL's error
	carries the server's number first; `frappe.db.sql` raises some of its own from it
	(QueryDeadlockError)."""
	seen: set[int] = set()
	current: BaseException | None = error
	while current is not None and id(current) not in seen:
		seen.add(id(current))
		args = getattr(current, "args", ())
		if args and args[0] == number:
			return True
		current = current.__cause__ or current.__context__
	return False


def draw_names(db: Database, count: int) -> list[int]:
	"""`count` Event Log names from its sequence, as Frappe's autoincrement naming draws
	them (frappe/model/naming.py), in one statement (MariaDB's `seq_1_to_n` table)."""
	rows = db.sql(f"SELECT NEXTVAL(`{EVENT_LOG_SEQUENCE}`) FROM `seq_1_to_{int(count)}`")
	return sorted(int(r[0]) for r in rows)


def write(
	db: Database,
	records: Sequence[OutboxRecord],
	now: datetime,
	user: str = SYSTEM_USER,
	context: MessageContext = NO_CONTEXT,
) -> None:
	"""Insert a transaction's events as Queued (or Dead) rows, in buffer order, and their
	delivery bundles (`bundles.write`: one per company, messages built in `context`): six
	statements whatever the number of events (see the module doc), inside the caller's
	transaction. All or nothing: on an error everything since the savepoint is undone
	(the counters too, so no company's sequence has a gap) and the error is raised."""
	if not records:
		return
	from erpnext_streaming.delivery import bundles

	db.sql(f"SAVEPOINT {_SAVEPOINT}")
	try:
		next_sequence = allocate_sequences(db, records, now)
		names = draw_names(db, len(records))
		values: list[Any] = []
		queued: list[dict[str, Any]] = []
		for name, record in zip(names, records, strict=True):
			sequence = next(next_sequence[bucket(record.company)])
			payload = base64.b64encode(record.payload).decode("ascii")
			values.extend(
				(
					name,
					now,
					now,
					user,
					user,
					0,
					0,
					record.event_id,
					record.status,
					record.event_type,
					record.reference_doctype,
					record.reference_name,
					record.company,
					record.event_time,
					record.topic,
					record.message_key,
					sequence,
					record.schema_name,
					record.schema_version,
					record.schema_fingerprint,
					record.encoding,
					0,
					payload,
					truncate_error(record.last_error),
				)
			)
			if record.status == Status.QUEUED:
				queued.append(
					{
						"name": name,
						"creation": now,
						"event_id": record.event_id,
						"event_type": record.event_type,
						"reference_doctype": record.reference_doctype,
						"reference_name": record.reference_name,
						"company": record.company,
						"event_time": record.event_time,
						"topic": record.topic,
						"message_key": record.message_key,
						"company_sequence": sequence,
						"schema_name": record.schema_name,
						"schema_version": record.schema_version,
						"schema_fingerprint": record.schema_fingerprint,
						"encoding": record.encoding,
						"payload": record.payload,  # the bytes: the bundle stores them as they are
					}
				)
		db.sql(_INSERT_HEAD + ", ".join([_ROW] * len(records)), values)
		# buckets the database holds as one name draw from one counter (`allocate_sequences`
		# gives them the same numbers): one bundle, so their events stay in sequence order
		shared: dict[int, str] = {}
		keys = {name: shared.setdefault(id(numbers), name) for name, numbers in next_sequence.items()}
		try:
			bundles.write(db, queued, now, context, user, keys)
		except Exception as e:
			if not is_mariadb_error(e, ER_NO_SUCH_TABLE):
				raise
			# the code is newer than the site's tables (bench migrate has not run yet): keep the
			# rows, the upgrade patch gives them their bundles (patches/v1_0/queue_pending_events)
	except Exception:
		db.sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
		raise


def truncate_error(text: str | None) -> str:
	text = text or ""
	return text if len(text) <= LAST_ERROR_LIMIT else text[: LAST_ERROR_LIMIT - 1] + "…"


def decode_payload(stored: str) -> bytes:
	"""The stored base64 text as bytes (`base64.b64decode` without its Python wrapper:
	once per event on the drainer's hot path; the same errors for non-ASCII input)."""
	return binascii.a2b_base64(stored)


def clear_old_logs(db: Database, days: int, now: datetime | None = None) -> None:
	"""Delete Sent rows last modified more than `days` ago. Queued, Failed and Dead rows stay:
	pending events are not delivered yet, and a dead letter stays until someone resolves it
	(requeued rows become Sent and age out; see Repost Item Valuation for the same rule)."""
	now = now or datetime.now()
	db.sql(
		f"DELETE FROM `{EVENT_LOG_TABLE}` WHERE `status` = %s AND `modified` < %s",
		(Status.SENT, now - timedelta(days=days)),
	)


# -- Delivery: outcomes, dead letters, requeue ---------------------------------------
#
# The drainer delivers from the delivery queue (delivery/bundles.py: bundles, cursors,
# receipts) and comes here for the Event Log rows: Failed and Dead outcomes, receipts
# settled to Sent, dead-letter copies, requeue. Locking rules (issue "Delivery", point 4):
# user transactions INSERT into this table all the time and nothing below may block them,
# so
# - the drainer's session runs READ COMMITTED (`use_read_committed`): its SELECTs are
#   consistent reads that lock nothing, and no statement takes gap or next-key locks;
# - every UPDATE names its rows by primary key and re-checks its condition, so it locks
#   exactly those committed rows, which no user transaction holds;
# - claimers are serialized by a MariaDB named lock (`get_lock`), never by row locks.
# Row leases (`lease_owner`, `lease_expires_at`) are taken only for dead-letter copies of
# Dead rows (`claim_dead_letters`); delivery leases live on the cursors.

# Composite indexes beyond the JSON's single-column ones; the controller's
# on_doctype_update creates them (Frappe), harness/schema.py does the same in tests.
EVENT_LOG_INDEXES: dict[str, tuple[str, ...]] = {
	# Dead rows whose dead-letter copy is still pending
	"status_dead_lettered_at_index": ("status", "dead_lettered_at", "name"),
}
# the index the row-by-row claim of earlier versions read; a patch drops it
OLD_PENDING_INDEX = "status_company_index"

CLAIMABLE = (Status.QUEUED, Status.FAILED)
_STANDARD_COLUMNS = ("name", "creation", "modified", "modified_by", "owner", "docstatus", "idx")
# what a drainer needs to build a message: name, creation and every column `write` fills
DELIVERY_COLUMNS = ("name", "creation", *(c for c in _COLUMNS if c not in _STANDARD_COLUMNS))
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
_T = f"`{EVENT_LOG_TABLE}`"
_SELECT_DELIVERY = "SELECT {} FROM {}".format(", ".join(f"`{c}`" for c in DELIVERY_COLUMNS), _T)
# a row in flight (any unexpired lease, the claimer's own included) is never claimed again
_LEASE_IS_FREE = (
	"(`lease_owner` IS NULL OR `lease_owner` = '' OR `lease_expires_at` IS NULL OR `lease_expires_at` <= %s)"
)
_MAX_LOCK_NAME = 64  # MariaDB's limit for GET_LOCK names


class TransactionalDatabase(Database, Protocol):
	def commit(self) -> None: ...

	def rollback(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Lease:
	owner: str
	until: datetime


@dataclass(slots=True)  # one per delivered event: not frozen, see delivery/producer.py
class Published:
	"""Where a message landed: the row's own event (Sent) or its dead-letter copy."""

	name: int
	partition: int
	offset: int


@dataclass(frozen=True, slots=True)
class Unsent:
	"""A row that was not delivered: Failed (with its next attempt) or Dead."""

	name: int
	status: str
	attempts: int
	last_error: str
	next_attempt_at: datetime | None = None
	dead_letter: Published | None = None  # Dead rows whose copy is already on the dead-letter topic


class RequeueRefused(Exception):
	"""Nothing was requeued; `rows` lists (name, reason) for each offending row."""

	def __init__(self, message: str, rows: Sequence[tuple[Any, str]] = ()):
		super().__init__(message)
		self.message = message
		self.rows = list(rows)


def use_read_committed(db: Database) -> None:
	"""READ COMMITTED for the session's next transactions (the caller commits next)."""
	db.sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")


@contextlib.contextmanager
def read_committed(db: TransactionalDatabase) -> Iterator[None]:
	"""READ COMMITTED for the transactions of the block, on a connection that is not the
	drainer's (the sweeper's, the scheduler's): the session's level is restored after it.
	Commits on entry and on exit (Frappe's commit begins the next transaction at once)."""
	before = db.sql("SELECT @@SESSION.tx_isolation")[0][0]
	use_read_committed(db)
	db.commit()
	try:
		yield
	finally:
		level = str(before).replace("-", " ")
		if level in _ISOLATION_LEVELS:
			db.sql(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
		db.commit()


_ISOLATION_LEVELS = frozenset({"READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"})


def lock_name(db: Database, purpose: str) -> str:
	"""A server-wide named lock for this site's database (several sites share a server)."""
	database = db.sql("SELECT DATABASE()")[0][0] or ""
	name = f"erpnext_streaming:{purpose}:{database}"
	if len(name) > _MAX_LOCK_NAME:
		import hashlib

		name = f"erpnext_streaming:{purpose}:{hashlib.sha1(database.encode()).hexdigest()[:24]}"
	return name


def get_lock(db: Database, name: str, timeout: float) -> bool:
	"""MariaDB GET_LOCK: held by this connection until `release_lock` or disconnect."""
	return db.sql("SELECT GET_LOCK(%s, %s)", (name, timeout))[0][0] == 1


def release_lock(db: Database, name: str) -> None:
	db.sql("SELECT RELEASE_LOCK(%s)", (name,))


def _in(values: Sequence[Any]) -> str:
	return ", ".join(["%s"] * len(values))


def claim_dead_letters(db: Database, lease: Lease, now: datetime, limit: int) -> list[Any]:
	"""Lease Dead rows whose dead-letter copy is pending (capture failures, or copies that
	could not be sent when the row died)."""
	names = [
		r[0]
		for r in db.sql(
			f"SELECT `name` FROM {_T} WHERE `status` = %s AND `dead_lettered_at` IS NULL "
			f"AND {_LEASE_IS_FREE} ORDER BY `name` LIMIT %s",
			(Status.DEAD, now, limit),
		)
	]
	if not names:
		return []
	db.sql(
		f"UPDATE {_T} SET `lease_owner` = %s, `lease_expires_at` = %s WHERE `name` IN ({_in(names)}) "
		f"AND `status` = %s AND `dead_lettered_at` IS NULL AND {_LEASE_IS_FREE}",
		[lease.owner, lease.until, *names, Status.DEAD, now],
	)
	return _leased_rows(db, names, lease)


def _leased_rows(db: Database, names: Sequence[Any], lease: Lease) -> list[Any]:
	return list(
		db.sql(
			f"{_SELECT_DELIVERY} WHERE `name` IN ({_in(names)}) AND `lease_owner` = %s "
			"AND `lease_expires_at` = %s ORDER BY `name`",
			[*names, lease.owner, lease.until],
			as_dict=True,
		)
	)


def _case(column: str, values: dict[Any, Any]) -> tuple[str, list[Any]]:
	"""`CASE name WHEN n1 THEN v1 ... ELSE column END` and its parameters."""
	sql = "CASE `name` " + " ".join(["WHEN %s THEN %s"] * len(values)) + f" ELSE `{column}` END"
	return sql, [v for pair in values.items() for v in pair]


def _update_rows(
	db: Database,
	per_row: dict[str, dict[Any, Any]],
	common: dict[str, Any],
	condition: str,
	condition_values: Sequence[Any],
) -> None:
	"""ONE UPDATE of the rows named in `per_row`'s values: per-row values through CASE,
	`common` values for all, only where `condition` (re-checked) holds."""
	names = list(dict.fromkeys(name for by_name in per_row.values() for name in by_name))
	assignments, values = [], []
	for column, by_name in per_row.items():
		sql, params = _case(column, by_name)
		assignments.append(f"`{column}` = {sql}")
		values.extend(params)
	assignments += [f"`{column}` = %s" for column in common]
	db.sql(
		f"UPDATE {_T} SET {', '.join(assignments)} WHERE `name` IN ({_in(names)}) AND {condition}",
		[*values, *common.values(), *names, *condition_values],
	)


def _positions(published: Sequence[Published]) -> dict[str, dict[Any, Any]]:
	return {
		"kafka_partition": {p.name: p.partition for p in published},
		"kafka_offset": {p.name: p.offset for p in published},
	}


# the rows' partitions and offsets as a table: one JSON parameter, joined by primary key
_POSITIONS_TABLE = (
	"JSON_TABLE(%s, '$[*]' COLUMNS (`name` BIGINT PATH '$[0]', `kafka_partition` INT PATH '$[1]', "
	"`kafka_offset` BIGINT PATH '$[2]')) AS `p`"
)


def _update_positions(
	db: Database,
	published: Sequence[Published] | str,
	common: dict[str, Any],
	condition: str,
	condition_values: Sequence[Any],
) -> None:
	"""ONE UPDATE that sets each row's partition and offset (a JSON_TABLE joined on the
	primary key: linear in the rows, where a CASE per column is quadratic) and `common`
	values, only where `condition` (re-checked, on columns of `t`) holds."""
	assignments = ["t.`kafka_partition` = p.`kafka_partition`", "t.`kafka_offset` = p.`kafka_offset`"]
	assignments += [f"t.`{column}` = %s" for column in common]
	rows = (
		published
		if isinstance(published, str)
		else json.dumps([[int(p.name), p.partition, p.offset] for p in published], separators=(",", ":"))
	)
	db.sql(
		f"UPDATE {_T} AS t JOIN {_POSITIONS_TABLE} ON t.`name` = p.`name` "
		f"SET {', '.join(assignments)} WHERE {condition}",
		[rows, *common.values(), *condition_values],
	)


_LEASE_CLEARED = {"lease_owner": None, "lease_expires_at": None}


def settle_positions(db: Database, positions: str, sent_at: datetime, now: datetime) -> None:
	"""Mark delivered rows Sent with their partition and offset: ONE statement for a
	receipt's `positions` (its JSON, [[name, partition, offset], ...], passed through as is).

	Only Queued or Failed rows change: the message is in Kafka whatever drainer sent it, and
	a row requeued since (Queued again) is sent again, at least once."""
	common = {"status": Status.SENT, "sent_at": sent_at, "modified": now, "next_attempt_at": None}
	_update_positions(db, positions, {**common, **_LEASE_CLEARED}, "t.`status` IN (%s, %s)", CLAIMABLE)


def mark_unsent(db: Database, rows: Sequence[Unsent], now: datetime) -> None:
	"""Record Failed / Dead outcomes of pending rows (of companies the drainer still
	leases, `bundles.still_leased`): ONE statement."""
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
		per_row.update(_positions([r.dead_letter for r in lettered]))
	_update_rows(db, per_row, {"modified": now, **_LEASE_CLEARED}, "`status` IN (%s, %s)", CLAIMABLE)


def mark_dead_lettered(db: Database, copies: Sequence[Published], now: datetime) -> None:
	"""Dead rows whose copy reached the dead-letter topic: ONE statement."""
	if copies:
		common = {"dead_lettered_at": now, "modified": now, **_LEASE_CLEARED}
		condition = "t.`status` = %s AND t.`dead_lettered_at` IS NULL"
		_update_positions(db, copies, common, condition, [Status.DEAD])


def release_leases(db: Database, owner: str, names: Sequence[Any]) -> None:
	if names:
		db.sql(
			f"UPDATE {_T} SET `lease_owner` = NULL, `lease_expires_at` = NULL "
			f"WHERE `name` IN ({_in(names)}) AND `lease_owner` = %s",
			[*names, owner],
		)


def release_expired_leases(db: Database, now: datetime, limit: int = 10000) -> list[Any]:
	"""Clear leases that expired (a drainer died); returns the rows released. Idempotent."""
	names = [
		r[0]
		for r in db.sql(
			f"SELECT `name` FROM {_T} WHERE `lease_expires_at` <= %s ORDER BY `name` LIMIT %s",
			(now, limit),
		)
	]
	if names:
		db.sql(
			f"UPDATE {_T} SET `lease_owner` = NULL, `lease_expires_at` = NULL "
			f"WHERE `name` IN ({_in(names)}) AND `lease_expires_at` <= %s",
			[*names, now],
		)
	return names


def dead_letters_pending(db: Database, now: datetime) -> bool:
	"""Is there a Dead row whose dead-letter copy is pending and not in flight?"""
	return bool(
		db.sql(
			f"SELECT 1 FROM {_T} WHERE `status` = %s AND `dead_lettered_at` IS NULL AND {_LEASE_IS_FREE} LIMIT 1",
			(Status.DEAD, now),
		)
	)


def pending_names(db: Database) -> list[int]:
	"""Every Queued or Failed row, in name order (the upgrade from the row-by-row drainer)."""
	return [
		r[0] for r in db.sql(f"SELECT `name` FROM {_T} WHERE `status` IN (%s, %s) ORDER BY `name`", CLAIMABLE)
	]


def companies_of(db: Database, names: Sequence[Any]) -> list[str]:
	"""The distinct companies of the rows `names`."""
	found: set[str] = set()
	for start in range(0, len(names), 1000):
		chunk = list(names[start : start + 1000])
		rows = db.sql(f"SELECT DISTINCT `company` FROM {_T} WHERE `name` IN ({_in(chunk)})", chunk)
		found.update(r[0] or "" for r in rows)
	return sorted(found)


def delivery_rows(db: Database, names: Sequence[Any]) -> list[Any]:
	"""The rows `names` (DELIVERY_COLUMNS), in name order: what a dead-letter copy is built from."""
	if not names:
		return []
	return list(
		db.sql(
			f"{_SELECT_DELIVERY} WHERE `name` IN ({_in(names)}) ORDER BY `name`", list(names), as_dict=True
		)
	)


def requeue_candidates(
	db: Database, filters: dict[str, Any], now: datetime, limit: int = 100000, since: datetime | None = None
) -> list[int]:
	"""Names of Failed/Dead rows matching `filters` ({field: value or [values]}, fields in
	REQUEUE_FILTER_FIELDS) and, with `since`, last changed (failed or died) at or after it,
	except rows a drainer is delivering right now. A status other than Failed or Dead is
	refused. Rows without an encoded event (written Dead because their capture failed)
	never match: publishing them would send an empty value."""
	conditions = [f"`status` IN ({_in(Status.REQUEUEABLE)})", _LEASE_IS_FREE, _HAS_PAYLOAD]
	values: list[Any] = [*Status.REQUEUEABLE, now]
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
		conditions.append(f"`{field}` IN ({_in(options)})")
		values.extend(options)
	rows = db.sql(
		f"SELECT `name` FROM {_T} WHERE {' AND '.join(conditions)} ORDER BY `name` LIMIT %s",
		[*values, limit],
	)
	return [r[0] for r in rows]


_HAS_PAYLOAD = "COALESCE(`payload`, '') != ''"
NO_PAYLOAD_REASON = (
	"has no encoded event (its capture failed); fix the cause and emit the document again, "
	"e.g. with bench streaming backfill"
)


def requeue(
	db: Database,
	names: Sequence[Any],
	now: datetime,
	user: str = SYSTEM_USER,
	context: MessageContext = NO_CONTEXT,
) -> list[int]:
	"""Failed/Dead -> Queued with a fresh attempt count. All or nothing: raises
	RequeueRefused if any row is missing, not Failed/Dead, leased by a drainer now, or has
	no encoded event (a capture failure).

	A Failed row's event is still in its company's next bundle: that bundle becomes due now
	(`bundles.retry_now`). A Dead row's event goes into a new bundle at the end of its
	company's queue (built in `context`, as a commit would), drawn under the
	company's counter lock like a commit's, so bundles still follow commit order."""
	try:
		wanted = sorted({int(n) for n in names})
	except (TypeError, ValueError):
		raise RequeueRefused("Event Log names are numbers")
	if not wanted:
		return []
	found = {}
	for start in range(0, len(wanted), 1000):
		chunk = wanted[start : start + 1000]
		for name, status, owner, expires, has_payload, company in db.sql(
			f"SELECT `name`, `status`, `lease_owner`, `lease_expires_at`, {_HAS_PAYLOAD}, `company` FROM {_T} "
			f"WHERE `name` IN ({_in(chunk)})",
			chunk,
		):
			found[name] = (status, owner, expires, has_payload, company)
	refused = []
	for name in wanted:
		if name not in found:
			refused.append((name, "does not exist"))
			continue
		status, owner, expires, has_payload, _ = found[name]
		if status not in Status.REQUEUEABLE:
			refused.append((name, f"is {status}; only Failed or Dead rows can be requeued"))
		elif owner and expires is not None and expires > now:
			refused.append((name, "is being delivered right now; try again in a moment"))
		elif not has_payload:
			refused.append((name, NO_PAYLOAD_REASON))
	if refused:
		raise RequeueRefused("Nothing was requeued", refused)
	for start in range(0, len(wanted), 1000):
		chunk = wanted[start : start + 1000]
		db.sql(
			f"UPDATE {_T} SET `status` = %s, `attempts` = 0, `next_attempt_at` = NULL, "
			"`dead_lettered_at` = NULL, `lease_owner` = NULL, `lease_expires_at` = NULL, "
			f"`modified` = %s, `modified_by` = %s WHERE `name` IN ({_in(chunk)}) "
			f"AND `status` IN ({_in(Status.REQUEUEABLE)})",
			[Status.QUEUED, now, user, *chunk, *Status.REQUEUEABLE],
		)
	from erpnext_streaming.delivery import bundles

	failed = [found[name][4] for name in wanted if found[name][0] == Status.FAILED]
	bundles.retry_now(db, failed, now)
	dead = [name for name in wanted if found[name][0] == Status.DEAD]
	if dead:
		lock_counters(db, [found[name][4] for name in dead])
		bundles.queue_rows(db, dead, now, context, user=user)
	return wanted


def lock_counters(db: Database, companies: Sequence[str]) -> None:
	"""Hold the companies' counter rows until COMMIT, as a commit's outbox write does (in
	the same order), so no commit of theirs draws a bundle meanwhile."""
	names = sorted({bucket(c) for c in companies})
	if names:
		db.sql(
			f"SELECT `name` FROM `{SEQUENCE_TABLE}` WHERE `name` IN ({_in(names)}) ORDER BY `name` FOR UPDATE",
			names,
		)
