"""Capture document events into a per-transaction buffer, and turn it into outbox records.

Framework-free: the doc_events glue (`emitters.handler`) passes the document, the route
from the catalog, a clock and a `Codec`; the before_commit flush passes `frappe.db`.

Why the flush reads the database (facts file, "ERPNext ledger behaviour", and issue 3):
- Stock Ledger Entry valuation (qty_after_transaction, valuation_rate, stock_value,
  stock_value_difference, incoming/outgoing rate) is computed after on_submit and
  written with `db_update()`, which fires no hook. SLE events are therefore captured as a
  snapshot and built at flush, completed from ONE query for all of the transaction's SLEs.
- A rollback to a savepoint (`frappe.db.rollback(save_point=...)`, used by ERPNext's bulk
  transactions and stock bin creation) runs no callback, so the buffer cannot see it.
  The flush reconciles instead: one `SELECT name, modified` per buffered doctype drops
  events whose row no longer exists or whose `modified` went back in time. Limit: a
  rolled-back `db_set(..., update_modified=False)` leaves `modified` unchanged and is not
  detected.

Why change events compare with the state the stream last EMITTED, not with
`get_doc_before_save()`: ERPNext writes an invoice's outstanding_amount with
`frappe.db.set_value` and only then `set_status(update=True)` (erpnext/accounts/utils.py
update_voucher_outstanding), whose `db_set` loads the "before" copy from the row that
already holds the new amount (frappe/model/document.py db_set); and the daily Overdue
update is a bulk UPDATE with no hook at all. The emitted state of each document is kept in
Streaming Emitted State (written at flush with one statement, read by primary key).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from erpnext_streaming import constants as c
from erpnext_streaming.catalog import Route
from erpnext_streaming.outbox.mariadb import Database
from erpnext_streaming.outbox.records import OutboxRecord

SLE = "Stock Ledger Entry"
# written after on_submit by update_entries_after (erpnext/stock/stock_ledger.py)
SLE_VALUATION_FIELDS = (
	"qty_after_transaction",
	"valuation_rate",
	"stock_value",
	"stock_value_difference",
	"incoming_rate",
	"outgoing_rate",
	"stock_queue",
)
DEFERRED_DOCTYPES = frozenset({SLE})


class Codec(Protocol):
	"""Builds and encodes records; the Avro implementation is `emitters.codec.AvroCodec`."""

	def build(self, doc: Any, route: Route) -> dict:
		"""The document body (masked per route), from the in-memory document only."""
		...

	def envelope(self, doc: Any, route: Route, emitted_at: datetime) -> dict: ...

	def encode(self, event: Captured) -> OutboxRecord:
		"""Raises on a record the schema cannot encode; the flush turns that into a dead letter."""
		...

	def dead_letter(self, event: Captured, reason: str) -> OutboxRecord: ...


@dataclass(slots=True)
class Captured:
	"""One buffered event."""

	route: Route
	doctype: str
	name: str
	company: str
	modified: datetime | None
	envelope: dict | None = None
	document: dict | None = None  # None until built (deferred doctypes, or failed captures)
	snapshot: dict | None = None  # deferred doctypes: the fields the builder reads
	state: tuple | None = None  # change events: the values of the spec's state_fields
	failure: str | None = None  # set when capture failed: becomes a dead letter

	@property
	def key(self) -> tuple[str, str]:
		return (self.doctype, self.name)


@dataclass
class Buffer:
	"""The events of one database transaction, in hook order (ledger rows before vouchers)."""

	events: list[Captured] = field(default_factory=list)
	known_state: dict[tuple[str, str], tuple | None] = field(default_factory=dict)
	logged: set[str] = field(default_factory=set)
	db: Database | None = None  # where the emitted states are stored

	def __len__(self) -> int:
		return len(self.events)

	def last_state(self, key: tuple[str, str]) -> tuple | None:
		"""The state the stream last emitted for a document: this transaction's, else the stored one."""
		if key not in self.known_state and self.db is not None:
			sql = f"SELECT `state` FROM `{c.EMITTED_STATE_TABLE}` WHERE `name` = %s"
			rows = self.db.sql(sql, (state_key(*key),))
			self.known_state[key] = tuple(json.loads(rows[0][0])) if rows else None
		return self.known_state.get(key)


def state_key(doctype: str, name: str) -> str:
	"""The Streaming Emitted State row's name: MD5 of `doctype|name` (SQL: `MD5(CONCAT(...))`)."""
	return hashlib.md5(f"{doctype}|{name}".encode()).hexdigest()


def _get(doc: Any, fieldname: str) -> Any:
	getter = getattr(doc, "get", None)
	return getter(fieldname) if callable(getter) else getattr(doc, fieldname, None)


def as_datetime(value: Any) -> datetime | None:
	if value is None or value == "" or isinstance(value, datetime):
		return value or None
	try:
		return datetime.fromisoformat(str(value))
	except ValueError:
		return None


def _norm(value: Any) -> Any:
	"""Compare states across float (in memory), Decimal (from SQL) and str (from forms)."""
	if isinstance(value, bool) or value is None:
		return value
	if isinstance(value, int | float | Decimal):
		return round(float(value), 9)
	try:
		return round(float(value), 9) if isinstance(value, str) and value.strip() else value
	except ValueError:
		return value


def state_of(doc: Any, fields: Sequence[str]) -> tuple | None:
	if doc is None:
		return None
	return tuple(_norm(_get(doc, f)) for f in fields)


def capture(buffer: Buffer, doc: Any, route: Route, now: datetime, codec: Codec) -> Captured | None:
	"""Buffer one event for `doc`; returns it, or None when a change event changed nothing.

	May raise (a builder refusing the document); the glue turns that into `capture_failed`.
	"""
	spec = c.spec_for(route.doctype)
	event = Captured(
		route=route,
		doctype=route.doctype,
		name=str(_get(doc, "name") or ""),
		company=str(_get(doc, "company") or ""),
		modified=as_datetime(_get(doc, "modified")),
	)
	if spec.state_fields:
		event.state = state_of(doc, spec.state_fields)
		if route.kind == c.Kind.CHANGE and buffer.last_state(event.key) == event.state:
			return None
		buffer.known_state[event.key] = event.state
	event.envelope = codec.envelope(doc, route, now)
	if route.doctype in DEFERRED_DOCTYPES:
		event.snapshot = _snapshot(doc)
	else:
		event.document = codec.build(doc, route)
	buffer.events.append(event)
	return event


def changed_without_hook(
	db: Database, doctype: str = "Sales Invoice", status_like: str = "Overdue%"
) -> list[str]:
	"""Submitted documents in a status ERPNext sets without a hook whose state differs from the
	one the stream last emitted (or was never emitted), in one query.

	erpnext/controllers/accounts_controller.py update_invoice_status, a daily job, marks
	invoices Overdue (or "Overdue and Discounted") with one bulk UPDATE: no doc_event fires.
	"""
	fields = c.spec_for(doctype).state_fields
	rows = db.sql(
		f"SELECT d.`name`, {', '.join(f'd.`{f}`' for f in fields)}, s.`state` FROM `tab{doctype}` d"
		f" LEFT JOIN `{c.EMITTED_STATE_TABLE}` s ON s.`name` = MD5(CONCAT(%s, '|', d.`name`))"
		" WHERE d.`docstatus` = 1 AND d.`status` LIKE %s ORDER BY d.`name`",
		(doctype, status_like),
		as_dict=True,
	)
	return [r["name"] for r in rows if list(state_of(r, fields)) != json.loads(r["state"] or "null")]


def capture_failed(buffer: Buffer, doc: Any, route: Route | None, method: str, reason: str) -> Captured:
	"""Record an event whose capture raised: it becomes a dead letter with the reason."""
	doctype = str(_get(doc, "doctype") or "")
	event = Captured(
		route=route
		or Route(doctype, method, "", method, "", 0, frozenset(), ""),  # no route: the catalog itself failed
		doctype=doctype,
		name=str(_get(doc, "name") or ""),
		company=str(_get(doc, "company") or ""),
		modified=as_datetime(_get(doc, "modified")),
		failure=reason,
	)
	buffer.events.append(event)
	return event


def _snapshot(doc: Any) -> dict:
	as_dict = getattr(doc, "as_dict", None)
	if callable(as_dict):
		return dict(as_dict())
	return dict(doc) if isinstance(doc, dict) else dict(vars(doc))


# -- flush ---------------------------------------------------------------------------------


def coalesce(events: Iterable[Captured]) -> list[Captured]:
	"""Reduce each document's change events per its spec; everything else keeps its place.

	- A change event before a lifecycle event (submitted, cancelled, updated_after_submit)
	  of the same document is dropped: the lifecycle event carries the newer state. (On a
	  real bench, submitting an invoice with stock db_sets its status from a second copy of
	  the document before the invoice's own on_submit handler runs.)
	- Coalesce.LAST keeps the last change event of a document; Coalesce.PER_STATUS keeps
	  the last event of each run of one status (`state[0]`), so no status transition is lost.
	"""
	events = list(events)
	last_lifecycle = {
		e.key: i for i, e in enumerate(events) if not e.failure and e.route.kind != c.Kind.CHANGE
	}
	drop: set[int] = set()
	last_of: dict[tuple[str, str], int] = {}
	for index, event in enumerate(events):
		if event.failure or event.route.kind != c.Kind.CHANGE:
			continue
		if index < last_lifecycle.get(event.key, -1):
			drop.add(index)
			continue
		previous = last_of.get(event.key)
		if previous is not None:
			mode = c.spec_for(event.doctype).coalesce
			same_run = events[previous].state and event.state and events[previous].state[0] == event.state[0]
			if mode == c.Coalesce.LAST or same_run:
				drop.add(previous)
		last_of[event.key] = index
	return [e for i, e in enumerate(events) if i not in drop]


def _rows_by_name(
	db: Database, doctype: str, names: Sequence[str], columns: Sequence[str]
) -> dict[str, dict]:
	if not names:
		return {}
	cols = ", ".join(f"`{col}`" for col in ("name", "modified", *columns))
	rows = db.sql(
		f"SELECT {cols} FROM `tab{doctype}` WHERE `name` IN ({', '.join(['%s'] * len(names))})",
		list(names),
		as_dict=True,
	)
	return {row["name"]: row for row in rows}


def reconcile(db: Database, events: list[Captured]) -> list[Captured]:
	"""Drop events of rows rolled back to a savepoint; complete deferred SLE snapshots.

	One query per doctype in the buffer (the SLE query also carries the valuation).
	"""
	names: dict[str, list[str]] = defaultdict(list)
	for event in events:
		if not event.failure and event.name:
			names[event.doctype].append(event.name)
	current = {
		doctype: _rows_by_name(
			db, doctype, list(dict.fromkeys(batch)), SLE_VALUATION_FIELDS if doctype == SLE else ()
		)
		for doctype, batch in names.items()
	}
	kept = []
	for event in events:
		if event.failure:
			kept.append(event)
			continue
		row = current.get(event.doctype, {}).get(event.name)
		if row is None:
			continue  # the row is gone: rolled back to a savepoint, or deleted in this transaction
		stored = as_datetime(row.get("modified"))
		if event.modified and stored and stored < event.modified:
			continue  # the change was rolled back to a savepoint
		if event.snapshot is not None:
			event.snapshot.update({f: row[f] for f in SLE_VALUATION_FIELDS if f in row})
		kept.append(event)
	return kept


def flush(
	buffer: Buffer, db: Database, codec: Codec, on_error: Callable[[Captured, Exception], None] | None = None
) -> list[OutboxRecord]:
	"""The transaction's outbox records, in buffer order. Never raises for one bad event:
	an event that cannot be built or encoded becomes a dead-letter record with the reason."""
	events = reconcile(db, coalesce(buffer.events))
	records = []
	for event in events:
		if event.failure:
			records.append(codec.dead_letter(event, event.failure))
			continue
		try:
			if event.document is None and event.snapshot is not None:
				event.document = codec.build(_Snapshot(event.snapshot), event.route)
			records.append(codec.encode(event))
		except Exception as e:
			if on_error:
				on_error(event, e)
			records.append(codec.dead_letter(event, describe_error(e)))
	remember(db, events)
	return records


def remember(db: Database, events: Sequence[Captured]) -> None:
	"""Store the state each event carries as the document's last emitted state (one statement)."""
	rows = {}
	for event in events:
		fields = c.spec_for(event.doctype).state_fields
		if fields and event.document is not None and not event.failure:
			state = json.dumps(state_of(event.document, fields))
			rows[state_key(event.doctype, event.name)] = (event.doctype, event.name, state)
	if rows:
		db.sql(
			f"INSERT INTO `{c.EMITTED_STATE_TABLE}` (`name`, `creation`, `modified`, `reference_doctype`, "
			f"`reference_name`, `state`) VALUES {', '.join(['(%s, NOW(6), NOW(6), %s, %s, %s)'] * len(rows))}"
			" ON DUPLICATE KEY UPDATE `state` = VALUES(`state`), `modified` = VALUES(`modified`)",
			[value for key, row in rows.items() for value in (key, *row)],
		)


def describe_error(error: Exception) -> str:
	return f"{type(error).__name__}: {error}"


class _Snapshot(dict):
	"""A completed snapshot read like a document (attribute and .get access)."""

	def __getattr__(self, key: str) -> Any:
		try:
			return self[key]
		except KeyError:
			raise AttributeError(key) from None
