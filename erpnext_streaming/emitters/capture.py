"""Capture document events into a per-transaction buffer, and turn it into outbox records.

Framework-free: the doc_events glue (`emitters.handler`) passes the document, the route
from the catalog, a clock and a `Codec`; the before_commit flush passes `frappe.db`.

Why the flush reads the database (facts file, "ERPNext ledger behaviour"; issue 17):
- ERPNext writes fields after the hook that captured a document, with `db_set`,
  `set_value` or `db_update` (no hook): SLE valuation (update_entries_after), a Work
  Order's status and its required items' consumed_qty (update_status, then
  update_required_items), an invoice's outstanding amount. So the last event of each
  document in the transaction is completed from its row as it stands at before_commit:
  ONE `SELECT *` per doctype (and one per child table the body carries), the row's
  non-NULL columns over the captured body, child rows matched by name. Earlier events
  of the same document (a status run of Work Order or Job Card) keep their captured state.
  Limit: a column ERPNext sets to NULL after the hook keeps its captured value.
  GL Entry and Payment Ledger Entry rows are final when their hook runs (`FINAL_AT_HOOK`):
  ERPNext inserts each with `submit()` and writes them again only in later transactions
  (a cancel's `set_as_cancel` / `delink_original_entry` run before the reversal rows are
  made; general_ledger.py make_reverse_gl_entries, utils.py create_payment_ledger_entry),
  so only their identity is read back, and a Journal Entry of thousands of rows is not
  built twice.
- A rollback to a savepoint (`frappe.db.rollback(save_point=...)`, used by ERPNext's bulk
  transactions and stock bin creation) runs no callback, so the buffer cannot see it.
  The same query drops events whose row no longer exists, whose `creation` differs (the
  name was given again to another document after the rollback: naming series are rolled
  back too) or whose `modified` went back in time. Limit: a rolled-back
  `db_set(..., update_modified=False)` leaves `modified` unchanged and is not detected.

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

# rows ERPNext never writes again in the transaction that submits them (module doc)
FINAL_AT_HOOK = frozenset({"GL Entry", "Payment Ledger Entry"})


class Codec(Protocol):
	"""Builds and encodes records; the Avro implementation is `emitters.codec.AvroCodec`."""

	def build(self, doc: Any, route: Route) -> dict:
		"""The document body (masked per route), from the in-memory document only."""
		...

	def envelope(self, doc: Any, route: Route, emitted_at: datetime) -> dict: ...

	def tables(self, route: Route) -> Sequence[tuple[str, str]]:
		"""(fieldname, child doctype) of the child tables the body carries."""
		...

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
	creation: datetime | None = None
	envelope: dict | None = None
	document: dict | None = None  # None for failed captures
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


def state_of(doc: Any, fields: Sequence[str]) -> tuple:
	return tuple(_norm(_get(doc, f)) for f in fields)


def capture(buffer: Buffer, doc: Any, route: Route, now: datetime, codec: Codec) -> Captured | None:
	"""Buffer one event for `doc`; returns it, or None when a change event changed nothing.

	May raise (a builder refusing the document); the glue turns that into `capture_failed`.
	"""
	spec = c.spec_for(route.doctype)
	if route.kind == c.Kind.CHANGE and not spec.drafts and int(_get(doc, "docstatus") or 0) < 1:
		return None  # a draft is not a business event (docs/event-catalog.md, "Drafts")
	event = Captured(
		route=route,
		doctype=route.doctype,
		name=str(_get(doc, "name") or ""),
		company=str(_get(doc, "company") or ""),
		modified=as_datetime(_get(doc, "modified")),
		creation=as_datetime(_get(doc, "creation")),
	)
	if spec.state_fields:
		event.state = state_of(doc, spec.state_fields)
		if route.kind == c.Kind.CHANGE and buffer.last_state(event.key) == event.state:
			return None
		buffer.known_state[event.key] = event.state
	event.envelope = codec.envelope(doc, route, now)
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
	return [r["name"] for r in rows if list(state_of(r, fields)) != json.loads(r["state"] or "[]")]


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


def _rows(db: Database, doctype: str, names: Sequence[str], tables: Sequence[tuple[str, str]]) -> dict:
	"""The rows of `names` as committed so far, each with its child rows (by table fieldname);
	of a doctype final at its hook, only their identity."""
	marks = ", ".join(["%s"] * len(names))
	columns = "`name`, `creation`, `modified`" if doctype in FINAL_AT_HOOK else "*"
	tables = () if doctype in FINAL_AT_HOOK else tables
	rows = db.sql(
		f"SELECT {columns} FROM `tab{doctype}` WHERE `name` IN ({marks})", list(names), as_dict=True
	)
	by_name = {row["name"]: dict(row) for row in rows}
	for fieldname, child in tables:
		for row in db.sql(
			f"SELECT * FROM `tab{child}` WHERE `parenttype` = %s AND `parentfield` = %s"
			f" AND `parent` IN ({marks}) ORDER BY `parent`, `idx`",
			[doctype, fieldname, *names],
			as_dict=True,
		):
			if row["parent"] in by_name:
				by_name[row["parent"]].setdefault(fieldname, []).append(dict(row))
	return by_name


def _rolled_back(event: Captured, row: dict) -> bool:
	"""The row is another document of the same name, or the captured change was undone."""
	creation, stored = as_datetime(row.get("creation")), as_datetime(row.get("modified"))
	if event.creation and creation and creation != event.creation:
		return True
	return bool(event.modified and stored and stored < event.modified)


def reconcile(db: Database, events: list[Captured], codec: Codec) -> list[tuple[Captured, dict | None]]:
	"""Drop events of documents rolled back to a savepoint; pair each document's last event
	with its committed row (None for earlier events). One query per doctype and child table."""
	routes: dict[str, Route] = {}
	names: dict[str, list[str]] = defaultdict(list)
	last: dict[tuple[str, str], int] = {}
	for index, event in enumerate(events):
		if not event.failure and event.name:
			routes.setdefault(event.doctype, event.route)
			names[event.doctype].append(event.name)
			last[event.key] = index
	current = {
		doctype: _rows(db, doctype, list(dict.fromkeys(batch)), codec.tables(routes[doctype]))
		for doctype, batch in names.items()
	}
	kept = []
	for index, event in enumerate(events):
		row = current.get(event.doctype, {}).get(event.name)
		if event.failure:
			kept.append((event, None))
		elif row is not None and not _rolled_back(event, row):
			final = last[event.key] != index or event.doctype in FINAL_AT_HOOK
			kept.append((event, None if final else row))
	return kept


def _over(captured: dict, row: dict) -> dict:
	return {**captured, **{k: v for k, v in row.items() if v is not None}}


def complete(event: Captured, row: dict, codec: Codec) -> None:
	"""Rebuild the event's envelope and body from its committed row (see the module doc)."""
	source = _over(event.document, row)
	for fieldname, _ in codec.tables(event.route):
		if row.get(fieldname):
			built = {r.get("name"): r for r in event.document.get(fieldname) or ()}
			source[fieldname] = [_over(built.get(r["name"], {}), r) for r in row[fieldname]]
	event.envelope = codec.envelope(source, event.route, event.envelope["emitted_at"])
	event.document = codec.build(source, event.route)
	if event.state is not None:
		event.state = state_of(source, c.spec_for(event.doctype).state_fields)  # the state it carries


def flush(
	buffer: Buffer, db: Database, codec: Codec, on_error: Callable[[Captured, Exception], None] | None = None
) -> list[OutboxRecord]:
	"""The transaction's outbox records, in buffer order. Never raises for one bad event:
	an event that cannot be built or encoded becomes a dead-letter record with the reason."""
	records, emitted = [], []
	for event, row in reconcile(db, coalesce(buffer.events), codec):
		if event.failure:
			records.append(codec.dead_letter(event, event.failure))
			continue
		try:
			if row is not None:
				complete(event, row, codec)
			records.append(codec.encode(event))
			emitted.append(event)
		except Exception as e:
			if on_error:
				on_error(event, e)
			records.append(codec.dead_letter(event, describe_error(e)))
	remember(db, emitted)
	return records


def remember(db: Database, events: Sequence[Captured]) -> None:
	"""Store the state each event carries as the document's last emitted state (one statement)."""
	rows = {state_key(e.doctype, e.name): (e.doctype, e.name, json.dumps(e.state)) for e in events if e.state}
	if rows:
		db.sql(
			f"INSERT INTO `{c.EMITTED_STATE_TABLE}` (`name`, `creation`, `modified`, `reference_doctype`, "
			f"`reference_name`, `state`) VALUES {', '.join(['(%s, NOW(6), NOW(6), %s, %s, %s)'] * len(rows))}"
			" ON DUPLICATE KEY UPDATE `state` = VALUES(`state`), `modified` = VALUES(`modified`)",
			[value for key, row in rows.items() for value in (key, *row)],
		)


def describe_error(error: Exception) -> str:
	return f"{type(error).__name__}: {error}"
