"""Outbox records and delivery-queue helpers for the delivery FrappeTestCase tests."""

import json
from datetime import datetime

import frappe

from erpnext_streaming import outbox
from erpnext_streaming.constants import (
	BUNDLE_DOCTYPE,
	BUNDLE_TABLE,
	CURSOR_DOCTYPE,
	CURSOR_TABLE,
	EVENT_LOG_DOCTYPE,
	RECEIPT_DOCTYPE,
	Status,
)


def outbox_record(
	ref: str,
	company: str,
	status: str = Status.QUEUED,
	prefix: str = "delivery-test",
	event_time: datetime | None = None,
):
	"""A GL Entry event with a tiny payload; Dead records carry a capture error."""
	return outbox.OutboxRecord(
		event_id=f"{prefix}-{ref}",
		event_type="posted",
		reference_doctype="GL Entry",
		reference_name=ref,
		company=company,
		event_time=event_time,
		topic="erpnext.gl-entry",
		message_key=company,
		schema_name="io.erpnext.streaming.GLEntryEvent",
		schema_version=1,
		schema_fingerprint="00",
		payload=b"\x01",
		status=status,
		last_error="capture failed" if status == Status.DEAD else "",
	)


def clear_delivery_tables() -> None:
	"""Empty the Event Log and the delivery queue inside the test's transaction (rolled back
	by tearDown), so what a test claims or counts is its own."""
	for doctype in (EVENT_LOG_DOCTYPE, BUNDLE_DOCTYPE, CURSOR_DOCTYPE, RECEIPT_DOCTYPE):
		frappe.db.delete(doctype)


def bundle_rows() -> list[dict]:
	"""Every bundle in name order, its messages parsed."""
	rows = frappe.db.sql(
		f"SELECT `name`, `creation`, `company`, `events`, `messages` FROM `{BUNDLE_TABLE}` ORDER BY `name`",
		as_dict=True,
	)
	for row in rows:
		row["entries"] = json.loads(row["messages"])
	return rows


def bundle_of(event_log: int) -> int:
	"""The name of the bundle holding Event Log row `event_log`."""
	return next(b["name"] for b in bundle_rows() if event_log in [e[0] for e in b["entries"]])


def cursor_rows() -> dict[str, dict]:
	"""{cursor name: its row}"""
	return {
		r["name"]: r
		for r in frappe.db.sql(
			f"SELECT `name`, `company`, `delivered_through`, `attempts`, `next_attempt_at`, `last_error`, "
			f"`lease_owner`, `lease_expires_at` FROM `{CURSOR_TABLE}`",
			as_dict=True,
		)
	}
