"""One synthetic transaction through the app's capture core, as the Frappe glue runs it.

`emitters.handler` does, per document event: ask the cached catalog for a route, then
`capture.capture(buffer, doc, route, now, codec)`; at `before_commit` it calls
`capture.flush(buffer, frappe.db, codec)` and `outbox.write(frappe.db, records, now)`
inside the transaction, and wakes the drainer after the commit. `commit_transaction`
below does exactly that on a PyMySQL connection (no Frappe): the ERPNext rows the
transaction writes, the flush (which reconciles with them and completes the stock ledger
valuation from them), the outbox rows, COMMIT, then the wake-up signal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from erpnext_streaming.catalog import Catalog, default_catalog_rows
from erpnext_streaming.constants import Encoding
from erpnext_streaming.emitters import capture
from erpnext_streaming.emitters.codec import AvroCodec
from erpnext_streaming.outbox.records import NO_CONTEXT, MessageContext, OutboxRecord
from erpnext_streaming.outbox.write import write
from erpnext_streaming.settings import StreamingConfig
from sandbox.workload import Transaction

# ERPNext columns the sandbox writes for each streamed doctype (what the flush reads)
ROW_COLUMNS = {
	"Sales Invoice": ("company", "customer", "posting_date", "status", "grand_total", "outstanding_amount"),
	"GL Entry": ("company", "account", "debit", "credit", "voucher_type", "voucher_no", "is_cancelled"),
	"Stock Ledger Entry": (
		"company", "item_code", "warehouse", "voucher_type", "voucher_no", "actual_qty", "is_cancelled",
		*capture.SLE_VALUATION_FIELDS,
	),
	"Payment Entry": ("company", "payment_type", "party", "paid_amount", "status"),
	"Payment Ledger Entry": (
		"company", "account", "voucher_type", "voucher_no", "against_voucher_no", "amount", "delinked",
	),
	"Work Order": ("company", "status", "production_item", "qty", "produced_qty"),
	"Job Card": ("company", "work_order", "operation", "status", "for_quantity", "total_completed_qty"),
}  # fmt: skip


def catalog(encoding: str = Encoding.DEFAULT, topic_prefix: str = "erpnext") -> Catalog:
	"""The five built-in doctypes with every event on (as seeded at install)."""
	rows = default_catalog_rows(topic_prefix)
	return Catalog.from_config(
		StreamingConfig.from_doc(
			{"enabled": 1, "topic_prefix": topic_prefix, "message_encoding": encoding, "event_catalog": rows}
		)
	)


def capture_transaction(tx: Transaction, routes: Catalog, codec: AvroCodec, now: datetime) -> capture.Buffer:
	buffer = capture.Buffer()
	for doc, method in tx.hooks:
		route = routes.route(doc.doctype, method)
		if route is not None:
			capture.capture(buffer, doc, route, now, codec)
	return buffer


def records_without_database(buffer: capture.Buffer, codec: AvroCodec) -> list[OutboxRecord]:
	"""The flush minus its database step (for tests that need no MariaDB): the documents
	already carry their final values, so nothing needs reconciling or completing."""
	records = []
	for event in capture.coalesce(buffer.events):
		if event.document is None and event.snapshot is not None:
			event.document = codec.build(capture._Snapshot(event.snapshot), event.route)
		records.append(codec.encode(event))
	return records


def write_rows(db: Any, tx: Transaction) -> None:
	"""The ERPNext rows of the transaction (upserted), and ledger rows flagged cancelled."""
	for doctype, doc in tx.rows:
		columns = ("name", "modified", "docstatus", *ROW_COLUMNS[doctype])
		values = [doc.get(c) for c in columns]
		db.sql(
			f"INSERT INTO `tab{doctype}` ({', '.join(f'`{c}`' for c in columns)}) VALUES "
			f"({', '.join(['%s'] * len(columns))}) ON DUPLICATE KEY UPDATE "
			+ ", ".join(f"`{c}` = VALUES(`{c}`)" for c in columns[1:]),
			values,
		)
	for doctype, name in tx.cancels:
		flag = "delinked" if doctype == "Payment Ledger Entry" else "is_cancelled"
		db.sql(f"UPDATE `tab{doctype}` SET `{flag}` = 1 WHERE `name` = %s", (name,))


def commit_transaction(
	db: Any,
	tx: Transaction,
	routes: Catalog,
	codec: AvroCodec,
	now: datetime,
	after_commit: Iterable[Callable[[], None]] = (),
	context: MessageContext = NO_CONTEXT,
) -> list[OutboxRecord]:
	"""Capture, write the ERPNext rows, flush into the outbox, COMMIT, then `after_commit`."""
	buffer = capture_transaction(tx, routes, codec, now)
	try:
		write_rows(db, tx)
		records = capture.flush(buffer, db, codec)
		write(db, records, now, context=context)
		db.commit()
	except Exception:
		db.rollback()
		raise
	for callback in after_commit:
		callback()
	return records
