"""The outbox write: a transaction's events into the Streaming Event Log and their delivery
bundles, inside the user's transaction, just before COMMIT (the `before_commit` flush of
emitters/handler.py), so a rollback leaves nothing and a commit makes the events as durable
as the document (docs/architecture.md, "Guarantees and their limits").

The per-company counter rows are upserted in sorted order (no deadlock between concurrent
transactions) and stay locked until COMMIT (InnoDB keeps an upserted row's lock to the end
of the transaction), so per company name order, company_sequence, bundle order and commit
order agree and the sequence has no gaps. MariaDB refuses a statement over
`max_allowed_packet` (error 1153) and ERPNext submits Journal Entries of tens of thousands
of rows in one transaction, so the INSERTs are cut by bytes (`mariadb.statement_budget`).
"""

from __future__ import annotations

import base64
import itertools
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any

from erpnext_streaming.constants import EVENT_LOG_SEQUENCE, EVENT_LOG_TABLE, Status
from erpnext_streaming.delivery import bundles
from erpnext_streaming.outbox.mariadb import (
	ER_NO_SUCH_TABLE,
	Database,
	chunks_by_bytes,
	is_mariadb_error,
	placeholders,
	statement_budget,
	value_bytes,
)
from erpnext_streaming.outbox.records import (
	COLUMNS,
	NO_CONTEXT,
	SEQUENCE_TABLE,
	SYSTEM_USER,
	MessageContext,
	OutboxRecord,
	bucket,
	truncate_error,
)

_INSERT_HEAD = "INSERT INTO `{}` ({}) VALUES ".format(EVENT_LOG_TABLE, ", ".join(f"`{c}`" for c in COLUMNS))
_RECORD_FIELDS = tuple(field.name for field in fields(OutboxRecord))
_SHARED = {
	"modified_by": f"'{SYSTEM_USER}'",
	"owner": f"'{SYSTEM_USER}'",
	"docstatus": "0",
	"idx": "0",
	"attempts": "0",
}
_PER_ROW = tuple(c for c in COLUMNS if c not in {*_SHARED, "creation", "modified", "payload"})
_SAVEPOINT = "erpnext_streaming_outbox"


def write(
	db: Database,
	records: Sequence[OutboxRecord],
	now: datetime,
	context: MessageContext = NO_CONTEXT,
) -> None:
	"""Insert a transaction's events as Queued (or Dead) rows, in buffer order, and their
	delivery bundles (`bundles.write`: one per company, messages built in `context`): six
	statements whatever the number of events (see the module doc), inside the caller's
	transaction. All or nothing: on an error everything since the savepoint is undone
	(the counters too, so no company's sequence has a gap) and the error is raised."""
	if not records:
		return
	db.sql(f"SAVEPOINT {_SAVEPOINT}")
	try:
		next_sequence = allocate_sequences(db, records, now)
		names = draw_names(db, len(records))
		row_sql = _row_sql(now)
		rows: list[tuple[str, tuple]] = []
		queued: list[dict[str, Any]] = []
		for name, record in zip(names, records, strict=True):
			row = _event_row(name, record, next(next_sequence[bucket(record.company)]), now)
			payload = base64.b64encode(record.payload).decode("ascii")
			rows.append((row_sql.format(payload), tuple(row[column] for column in _PER_ROW)))
			if record.status == Status.QUEUED:
				queued.append(row)
		_insert_rows(db, rows, statement_budget(db))
		_write_bundles(db, queued, now, context, _bundle_keys(next_sequence))
	except Exception:
		db.sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
		raise


def _row_sql(now: datetime) -> str:
	"""One Event Log row's VALUES, `%s` for what differs between rows. What all rows of a
	write share is written in as literals that need no escaping (the time as digits, the
	system user, zeros), and so is the payload's base64 text (`{}`: the RFC 4648 alphabet
	has no quote, backslash or %): PyMySQL's escaping, done per value in Python, is most of
	a large transaction's outbox cost."""
	stamp = f"'{now:%Y-%m-%d %H:%M:%S.%f}'"
	literals = dict(_SHARED, creation=stamp, modified=stamp, payload="'{}'")
	return "({})".format(", ".join(literals.get(column, "%s") for column in COLUMNS))


def _insert_rows(db: Database, rows: Sequence[tuple[str, tuple]], budget: int) -> None:
	"""The Event Log rows (each its SQL with the payload, and its other values) in as few
	multi-row INSERTs as fit the statement budget."""
	for chunk in chunks_by_bytes(rows, _row_bytes, budget):
		db.sql(_INSERT_HEAD + ", ".join(sql for sql, _ in chunk), [v for _, values in chunk for v in values])


def _row_bytes(row: tuple[str, tuple]) -> int:
	return len(row[0]) + sum(value_bytes(v) for v in row[1])


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


def draw_names(db: Database, count: int) -> list[int]:
	"""`count` Event Log names from its sequence, as Frappe's autoincrement naming draws
	them (frappe/model/naming.py), in one statement (MariaDB's `seq_1_to_n` table)."""
	rows = db.sql(f"SELECT NEXTVAL(`{EVENT_LOG_SEQUENCE}`) FROM `seq_1_to_{int(count)}`")
	return sorted(int(r[0]) for r in rows)


def lock_counters(db: Database, companies: Sequence[str]) -> None:
	"""Hold the companies' counter rows until COMMIT, as a commit's outbox write does (in
	the same order), so no commit of theirs draws a bundle meanwhile."""
	names = sorted({bucket(c) for c in companies})
	if names:
		db.sql(
			f"SELECT `name` FROM `{SEQUENCE_TABLE}` WHERE `name` IN ({placeholders(names)}) ORDER BY `name` FOR UPDATE",
			names,
		)


def _event_row(name: int, record: OutboxRecord, sequence: int, now: datetime) -> dict[str, Any]:
	"""The Event Log row of a record, by column, with the payload's bytes (`write` stores
	them as base64 text; `bundles.write` takes them as they are). The columns every row of a
	write shares are literals of `_row_sql`, not values here."""
	row = {field: getattr(record, field) for field in _RECORD_FIELDS}
	row.update(
		name=name, creation=now, company_sequence=sequence, last_error=truncate_error(record.last_error)
	)
	return row


def _bundle_keys(next_sequence: Mapping[str, Iterator[int]]) -> dict[str, str]:
	"""{bucket: its bundle's company}: buckets the database holds as one name draw from one
	counter (`allocate_sequences` gives them the same numbers), so they get one bundle and
	their events stay in sequence order."""
	shared: dict[int, str] = {}
	return {name: shared.setdefault(id(numbers), name) for name, numbers in next_sequence.items()}


def _write_bundles(
	db: Database,
	queued: Sequence[dict[str, Any]],
	now: datetime,
	context: MessageContext,
	keys: Mapping[str, str],
) -> None:
	"""`bundles.write`, except on a site whose tables are older than the code (bench migrate
	has not run yet): the rows stay, and the upgrade patch gives them their bundles
	(patches/v1_0/queue_pending_events)."""
	try:
		bundles.write(db, queued, now, context, SYSTEM_USER, keys)
	except Exception as e:
		if not is_mariadb_error(e, ER_NO_SUCH_TABLE):
			raise
