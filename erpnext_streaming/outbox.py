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
The lock is taken in before_commit, after all of ERPNext's own work, and held only for
the insert and the COMMIT.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from erpnext_streaming.constants import EVENT_LOG_SEQUENCE, EVENT_LOG_TABLE, Status

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
	"attempts",
	"payload",
	"last_error",
)
_INSERT_HEAD = "INSERT INTO `{}` ({}) VALUES ".format(EVENT_LOG_TABLE, ", ".join(f"`{c}`" for c in _COLUMNS))
# NEXTVAL draws the autoincrement name Frappe itself would draw (frappe/model/naming.py)
_ROW = "(NEXTVAL(`{}`), {})".format(EVENT_LOG_SEQUENCE, ", ".join(["%s"] * (len(_COLUMNS) - 1)))


def bucket(company: str) -> str:
	return company or NO_COMPANY_BUCKET


def allocate_sequences(db: Database, records: Sequence[OutboxRecord], now: datetime) -> dict[str, int]:
	"""Reserve consecutive per-company sequence numbers; returns the first number per bucket."""
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
	rows = db.sql(
		f"SELECT `name`, `last_sequence` FROM `{SEQUENCE_TABLE}` WHERE `name` IN ({', '.join(['%s'] * len(companies))})",
		companies,
	)
	return {name: last - counts[name] + 1 for name, last in rows}


def write(db: Database, records: Sequence[OutboxRecord], now: datetime, user: str = SYSTEM_USER) -> None:
	"""Insert a transaction's events as Queued (or Dead) rows, in buffer order."""
	if not records:
		return
	next_sequence = allocate_sequences(db, records, now)
	values: list[Any] = []
	for record in records:
		key = bucket(record.company)
		sequence = next_sequence[key]
		next_sequence[key] = sequence + 1
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
	return base64.b64decode(stored)


def clear_old_logs(db: Database, days: int, now: datetime | None = None) -> None:
	"""Delete Sent rows last modified more than `days` ago. Queued, Failed and Dead rows stay:
	pending events are not delivered yet, and a dead letter stays until someone resolves it
	(requeued rows become Sent and age out; see Repost Item Valuation for the same rule)."""
	now = now or datetime.now()
	db.sql(
		f"DELETE FROM `{EVENT_LOG_TABLE}` WHERE `status` = %s AND `modified` < %s",
		(Status.SENT, now - timedelta(days=days)),
	)
