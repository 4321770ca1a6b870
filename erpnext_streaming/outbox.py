"""The transactional outbox: Streaming Event Log rows written inside the user's transaction.

All SQL against `tabStreaming Event Log` and `tabStreaming Company Sequence` lives here.
Functions take a `db` with Frappe's `frappe.db.sql(query, values, as_dict=...)` shape
(Frappe's own `frappe.db` in production; PyMySQL behind the test stand-in) and a `now`
from the caller, so the module has no Frappe import and times follow Frappe's
`now_datetime()` (system time zone), like the `modified` column Frappe writes.

Writing a transaction's events costs three statements whatever the number of events:
1. one upsert of the per-company counters (companies sorted, so concurrent transactions
   lock them in the same order and cannot deadlock on them),
2. one read of the new counter values,
3. one multi-row INSERT of the events.
The counter rows stay locked until COMMIT, so two transactions with events of the same
company commit one after the other: for every company, name order, company_sequence
order and commit order agree, and the sequence has no gaps (a consumer can detect loss).
Counter rows are keyed under the database's collation: names that differ only in case or
trailing spaces are one row, and their events share its sequence.
The lock is taken in before_commit, after all of ERPNext's own work, and held only for
the insert and the COMMIT.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Protocol

from erpnext_streaming.constants import EVENT_LOG_SEQUENCE, EVENT_LOG_TABLE, Encoding, Status

SEQUENCE_TABLE = "tabStreaming Company Sequence"
# tabStreaming Company Sequence.name of events without a company (a Frappe name cannot be empty)
NO_COMPANY_BUCKET = "-"
LAST_ERROR_LIMIT = 2000
SYSTEM_USER = "Administrator"


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
# NEXTVAL draws the autoincrement name Frappe itself would draw (frappe/model/naming.py)
_ROW = "(NEXTVAL(`{}`), {})".format(EVENT_LOG_SEQUENCE, ", ".join(["%s"] * (len(_COLUMNS) - 1)))


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


def write(db: Database, records: Sequence[OutboxRecord], now: datetime, user: str = SYSTEM_USER) -> None:
	"""Insert a transaction's events as Queued (or Dead) rows, in buffer order: three
	statements whatever the number of events (sequence upsert, its read, ONE multi-row
	INSERT), inside the caller's transaction."""
	if not records:
		return
	next_sequence = allocate_sequences(db, records, now)
	values: list[Any] = []
	for record in records:
		sequence = next(next_sequence[bucket(record.company)])
		values.extend(
			(
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
				base64.b64encode(record.payload).decode("ascii"),
				truncate_error(record.last_error),
			)
		)
	try:
		db.sql(_INSERT_HEAD + ", ".join([_ROW] * len(records)), values)
	except Exception:
		# give the numbers back (we still hold the counter rows' locks), so a failed
		# write leaves no gap in any company's sequence; then let the caller decide
		release_sequences(db, records)
		raise


def release_sequences(db: Database, records: Sequence[OutboxRecord]) -> None:
	for name, count in sorted(Counter(bucket(r.company) for r in records).items()):
		db.sql(
			f"UPDATE `{SEQUENCE_TABLE}` SET `last_sequence` = `last_sequence` - %s WHERE `name` = %s",
			(count, name),
		)


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


# -- Delivery: claim, lease, mark, release, requeue -----------------------------------
#
# Used by the drainer (delivery/drainer.py), the sweeper and the requeue API. Locking
# rules (issue "Delivery", point 4): user transactions INSERT into this table all the
# time and nothing below may block them, so
# - the drainer's session runs READ COMMITTED (`use_read_committed`): its SELECTs are
#   consistent reads that lock nothing, and no statement takes gap or next-key locks;
# - every UPDATE names its rows by primary key (`name IN (...)`) and re-checks its
#   condition, so it locks exactly those committed rows, which no user transaction holds;
# - claimers are serialized by a MariaDB named lock (`get_lock`), never by row locks.
#
# Leases: a claim takes a prefix of each company's pending rows in name order, and leases
# its FIRST row (`lease_owner`, the drainer, and `lease_expires_at`). A company whose first
# pending row is leased (in flight, by any drainer), or is Failed and not yet due, yields
# nothing: so that one lease keeps the whole prefix to one drainer, one company's rows are
# never published by two drainers at once, and a Failed row holds back the later rows of
# its company. An expired lease is free for anyone. The prefix is marked (Sent, Failed,
# Dead) by its drainer; Sent clears the lease, and the next pending row becomes the first.

# Composite indexes beyond the JSON's single-column ones; the controller's
# on_doctype_update creates them (Frappe), harness/schema.py does the same in tests.
PENDING_INDEX = "status_company_index"
EVENT_LOG_INDEXES: dict[str, tuple[str, ...]] = {
	# pending companies (loose index scan) and each company's pending rows in name order;
	# the claim FORCEs it: with a large backlog behind many Sent rows, MariaDB 10.11 walked
	# the primary key instead (2.6 s per query at 1,000,000 rows, against 20 ms)
	PENDING_INDEX: ("status", "company", "name"),
	# Dead rows whose dead-letter copy is still pending
	"status_dead_lettered_at_index": ("status", "dead_lettered_at", "name"),
}

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


def _in_flight(row: Any, now: datetime) -> bool:
	expires = row["lease_expires_at"]
	return bool(row["lease_owner"]) and expires is not None and expires > now


def _held_back(row: Any, now: datetime) -> bool:
	due = row["next_attempt_at"]
	return row["status"] == Status.FAILED and due is not None and due > now


def claimable(
	db: Database, now: datetime, limit: int, packed: bool = False, after: Mapping[Any, int] | None = None
) -> list[Any]:
	"""The rows a claim would take now (light columns, name order), without leasing them;
	with `packed`, also everything a message needs, in one `packed` column (`_PACKED`).
	`after` ({company: name}) starts those companies after that row: the claimer's own batch
	in flight, whose rows it continues.

	Per company: its pending rows in name (= sequence) order, up to the first one that is
	in flight or Failed and not yet due. Read-only: consistent reads, no locks.
	"""
	groups = db.sql(
		f"SELECT `status`, `company` FROM {_T} WHERE `status` IN (%s, %s) GROUP BY `status`, `company`",
		CLAIMABLE,
	)
	if not groups or limit <= 0:
		return []
	companies = {company for _, company in groups}
	per_company = max(-(-limit // len(companies)), min(limit, 100))
	parts, values = [], []
	after = after or {}
	for status, company in groups:
		parts.append(
			"(SELECT `name`, `company`, `status`, `attempts`, `next_attempt_at`, `lease_owner`, `lease_expires_at`"
			f"{_PACKED if packed else ''} FROM {_T} FORCE INDEX (`{PENDING_INDEX}`) "
			f"WHERE `status` = %s AND `company` {'IS NULL' if company is None else '= %s'} "
			f"{'AND `name` > %s ' if company in after else ''}ORDER BY `name` LIMIT %s)"
		)
		values.append(status)
		if company is not None:
			values.append(company)
		if company in after:
			values.append(after[company])
		values.append(per_company)
	candidates = db.sql(" UNION ALL ".join(parts), values, as_dict=True)

	by_company: dict[Any, list[Any]] = {}
	for row in sorted(candidates, key=lambda r: r["name"]):
		by_company.setdefault(row["company"], []).append(row)
	eligible = []
	for rows in by_company.values():
		for row in rows[:per_company]:
			if _in_flight(row, now) or _held_back(row, now):
				break  # the company's later rows wait behind this one
			eligible.append(row)
	return sorted(eligible, key=lambda r: r["name"])[:limit]


def claim(
	db: Database, lease: Lease, now: datetime, limit: int, after: Mapping[Any, int] | None = None
) -> list[Any]:
	"""Lease up to `limit` claimable rows and return them (DELIVERY_COLUMNS) in name order.

	Per company the rows are a prefix of its pending rows in name (= sequence) order, or,
	for the companies in `after`, of those after the claimer's own batch in flight. Run it
	under the claim lock, inside a transaction the caller commits.

	Only the FIRST row of each company's prefix is leased (`lease_holders`): a claim stops
	at a company's first row in flight, so that one lease keeps every other claimer off the
	whole prefix, and a claim writes one row per company instead of one per event (a row
	UPDATE costs about as much as everything else the drainer does for an event;
	benchmarks/RESULTS.md, P3). The prefix is released, renewed and marked as one.

	The rows come from the one read that chose them (`claimable(packed=True)`): when the
	lease UPDATE took every company (`ROW_COUNT()`), nobody changed the rows in between but
	a requeue of a Failed row, or the late mark of a row whose expired lease another drainer
	held, so only those rows' status and attempts are read again. Otherwise, or when a row
	does not unpack, the chosen rows are read back column by column and each company is cut
	at its first row that is no longer pending.
	"""
	chosen = claimable(db, now, limit, packed=True, after=after)
	if not chosen:
		return []

	first_by_company = lease_holders(chosen)
	firsts = list(first_by_company.values())
	db.sql(
		f"UPDATE {_T} SET `lease_owner` = %s, `lease_expires_at` = %s "
		f"WHERE `name` IN ({_in(firsts)}) AND `status` IN (%s, %s) AND {_LEASE_IS_FREE}",
		[lease.owner, lease.until, *firsts, *CLAIMABLE, now],
	)
	if db.sql("SELECT ROW_COUNT()")[0][0] == len(firsts):
		rows = [unpack(row) for row in chosen]
		if all(rows):
			# a Failed row may have been requeued, and a row whose expired lease another drainer
			# held may have been marked by it, between the read and the lease: read those again
			failed = [r["name"] for r in chosen if r["status"] == Status.FAILED or r["lease_owner"]]
			if failed:
				current = {
					name: (status, attempts)
					for name, status, attempts in db.sql(
						f"SELECT `name`, `status`, `attempts` FROM {_T} WHERE `name` IN ({_in(failed)})",
						failed,
					)
				}
				for row in rows:
					if row["name"] in current:
						row["status"], row["attempts"] = current[row["name"]]
			return rows
	return _read_back(db, chosen, first_by_company, lease)


def _read_back(
	db: Database, chosen: Sequence[Any], first_by_company: dict[Any, Any], lease: Lease
) -> list[Any]:
	"""The chosen rows of the companies this claim leased, read again column by column; each
	company cut before its first row another party changed meanwhile (a requeue, a late
	mark), so the claim stays a prefix behind its leased first row."""
	held = still_leased(db, lease.owner, first_by_company)
	names = [r["name"] for r in chosen if r["company"] in held]
	got = (
		{
			r["name"]: r
			for r in db.sql(
				f"{_SELECT_DELIVERY} WHERE `name` IN ({_in(names)}) AND `status` IN (%s, %s) ORDER BY `name`",
				[*names, *CLAIMABLE],
				as_dict=True,
			)
		}
		if names
		else {}
	)
	keep, cut = [], set()
	for row in chosen:
		company = row["company"]
		if company in cut or row["name"] not in got:
			cut.add(company)
			continue
		keep.append(got[row["name"]])
	kept = {r["name"] for r in keep}
	lost = [first_by_company[company] for company in held if first_by_company[company] not in kept]
	if lost:
		release_leases(db, lease.owner, lost)
	return keep


def lease_holders(rows: Sequence[Any]) -> dict[Any, Any]:
	"""{company: the leased row of its claimed prefix}: its first row (rows in name order)."""
	firsts: dict[Any, Any] = {}
	for row in rows:
		firsts.setdefault(row["company"], row["name"])
	return firsts


def leased_names(rows: Sequence[Any]) -> list[Any]:
	"""The rows among claimed `rows` that carry the lease (each company's first)."""
	return list(lease_holders(rows).values())


# Everything a message needs but the light columns, as ONE binary column: PyMySQL converts
# each column of each row in Python, and at 2,000 rows per claim the delivery columns cost
# more than the rest of the drainer's work (benchmarks/RESULTS.md, P3). Binary strings, so
# no collations mix (the table's, the connection's); a NUL byte stands for NULL. A field
# holding the separator, or a row too long for max_allowed_packet (CONCAT_WS gives NULL),
# does not unpack, and the claim reads that batch back column by column instead.
_PACKED_SEPARATOR = "\x1f"
_PACKED_NULL = "\x00"
_PACKED_COLUMNS = (
	"creation",
	*(c for c in _COLUMNS if c not in (*_STANDARD_COLUMNS, "status", "company", "attempts", "last_error")),
)
_PACKED_COUNT = len(_PACKED_COLUMNS)
_PACKED = ", `last_error`, CONCAT_WS(0x1f, {}) AS `packed`".format(
	", ".join(f"IFNULL(CAST(`{column}` AS BINARY), X'00')" for column in _PACKED_COLUMNS)
)


def unpack(row: dict) -> dict | None:
	"""A claimed row with a `packed` column as the DELIVERY_COLUMNS dict the drainer and
	`messages.build` read, or None if it does not unpack. Once per event on the drainer's
	hot path: the dict is zipped in C, and only a row holding a NULL is walked in Python."""
	packed = row.pop("packed", None)
	try:
		if isinstance(packed, bytes | bytearray):
			packed = packed.decode("utf-8")
		values = packed.split(_PACKED_SEPARATOR)
		if len(values) != _PACKED_COUNT:
			return None
		out = dict(zip(_PACKED_COLUMNS, values, strict=True))
		if _PACKED_NULL in values:
			for column, value in out.items():
				if value == _PACKED_NULL:
					out[column] = None
		creation, event_time = out["creation"], out["event_time"]
		out["creation"] = _parse_time(creation) if creation else None
		out["event_time"] = _parse_time(event_time) if event_time else None
		sequence, version = out["company_sequence"], out["schema_version"]
		out["company_sequence"] = int(sequence) if sequence else sequence
		out["schema_version"] = int(version) if version else version
	except Exception:
		return None
	out["name"], out["status"], out["company"] = row["name"], row["status"], row["company"]
	out["attempts"], out["last_error"] = row["attempts"], row["last_error"]
	return out


_parse_time = lru_cache(maxsize=4096)(datetime.fromisoformat)  # a transaction's rows share one


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
	published: Sequence[Published],
	common: dict[str, Any],
	condition: str,
	condition_values: Sequence[Any],
) -> None:
	"""ONE UPDATE that sets each row's partition and offset (a JSON_TABLE joined on the
	primary key: linear in the rows, where a CASE per column is quadratic) and `common`
	values, only where `condition` (re-checked, on columns of `t`) holds."""
	assignments = ["t.`kafka_partition` = p.`kafka_partition`", "t.`kafka_offset` = p.`kafka_offset`"]
	assignments += [f"t.`{column}` = %s" for column in common]
	rows = json.dumps([[int(p.name), p.partition, p.offset] for p in published], separators=(",", ":"))
	db.sql(
		f"UPDATE {_T} AS t JOIN {_POSITIONS_TABLE} ON t.`name` = p.`name` "
		f"SET {', '.join(assignments)} WHERE {condition}",
		[rows, *common.values(), *condition_values],
	)


_LEASE_CLEARED = {"lease_owner": None, "lease_expires_at": None}


def mark_sent(db: Database, sent: Sequence[Published], now: datetime) -> None:
	"""Mark delivered rows Sent with their partition and offset: ONE statement per batch.

	Not conditional on the lease: the message is in Kafka whoever holds the row now.
	"""
	if sent:
		common = {"status": Status.SENT, "sent_at": now, "modified": now, "next_attempt_at": None}
		_update_positions(db, sent, {**common, **_LEASE_CLEARED}, "t.`status` IN (%s, %s)", CLAIMABLE)


def mark_unsent(db: Database, owner: str, rows: Sequence[Unsent], now: datetime) -> None:
	"""Record Failed / Dead outcomes of pending rows that no other drainer leases (this
	owner leased each company's first row; see `claim`): ONE statement."""
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
	condition = "`status` IN (%s, %s) AND (`lease_owner` = %s OR `lease_owner` IS NULL OR `lease_owner` = '')"
	_update_rows(db, per_row, {"modified": now, **_LEASE_CLEARED}, condition, [*CLAIMABLE, owner])


def mark_dead_lettered(db: Database, copies: Sequence[Published], now: datetime) -> None:
	"""Dead rows whose copy reached the dead-letter topic: ONE statement."""
	if copies:
		common = {"dead_lettered_at": now, "modified": now, **_LEASE_CLEARED}
		condition = "t.`status` = %s AND t.`dead_lettered_at` IS NULL"
		_update_positions(db, copies, common, condition, [Status.DEAD])


def still_leased(db: Database, owner: str, leases: Mapping[Any, Any]) -> set[Any]:
	"""The companies whose claimed prefix `owner` still leases (`leases`: {company: its
	leased first row}, `lease_holders`). A company another drainer took over after the
	lease expired is not: its rows are that drainer's to mark."""
	if not leases:
		return set()
	names = list(leases.values())
	held = {
		r[0]
		for r in db.sql(
			f"SELECT `name` FROM {_T} WHERE `name` IN ({_in(names)}) AND `lease_owner` = %s", [*names, owner]
		)
	}
	return {company for company, name in leases.items() if name in held}


def release_leases(db: Database, owner: str, names: Sequence[Any]) -> None:
	if names:
		db.sql(
			f"UPDATE {_T} SET `lease_owner` = NULL, `lease_expires_at` = NULL "
			f"WHERE `name` IN ({_in(names)}) AND `lease_owner` = %s",
			[*names, owner],
		)


def renew_leases(db: Database, owner: str, names: Sequence[Any], until: datetime) -> int:
	"""Extend `owner`'s leases on pending rows `names` (the leased first rows of claimed
	prefixes, `lease_holders`) to `until`; how many it still held."""
	if not names:
		return 0
	db.sql(
		f"UPDATE {_T} SET `lease_expires_at` = %s WHERE `name` IN ({_in(names)}) AND `lease_owner` = %s "
		"AND `status` IN (%s, %s)",
		[until, *names, owner, *CLAIMABLE],
	)
	return db.sql("SELECT ROW_COUNT()")[0][0]


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


def has_pending_work(db: Database, now: datetime) -> bool:
	"""Is there anything a drainer could do now: a claimable row (Queued, or Failed and due,
	and not held back behind its company's Failed row), or a Dead row whose dead-letter
	copy is pending and not in flight?"""
	if claimable(db, now, 1):
		return True
	return bool(
		db.sql(
			f"SELECT 1 FROM {_T} WHERE `status` = %s AND `dead_lettered_at` IS NULL AND {_LEASE_IS_FREE} LIMIT 1",
			(Status.DEAD, now),
		)
	)


def next_attempt_due(db: Database) -> datetime | None:
	"""The earliest next attempt of a Failed row (only Failed rows carry one)."""
	return db.sql(f"SELECT MIN(`next_attempt_at`) FROM {_T} WHERE `status` = %s", (Status.FAILED,))[0][0]


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


def requeue(db: Database, names: Sequence[Any], now: datetime, user: str = SYSTEM_USER) -> list[int]:
	"""Failed/Dead -> Queued with a fresh attempt count. All or nothing: raises
	RequeueRefused if any row is missing, not Failed/Dead, leased by a drainer now, or has
	no encoded event (a capture failure)."""
	try:
		wanted = sorted({int(n) for n in names})
	except (TypeError, ValueError):
		raise RequeueRefused("Event Log names are numbers")
	if not wanted:
		return []
	found = {}
	for start in range(0, len(wanted), 1000):
		chunk = wanted[start : start + 1000]
		for name, status, owner, expires, has_payload in db.sql(
			f"SELECT `name`, `status`, `lease_owner`, `lease_expires_at`, {_HAS_PAYLOAD} FROM {_T} "
			f"WHERE `name` IN ({_in(chunk)})",
			chunk,
		):
			found[name] = (status, owner, expires, has_payload)
	refused = []
	for name in wanted:
		if name not in found:
			refused.append((name, "does not exist"))
			continue
		status, owner, expires, has_payload = found[name]
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
	return wanted
