"""Helpers for the operations tests: Event Log rows in given states, streaming settings,
historical documents."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta

import frappe
from frappe import standin

from erpnext_streaming import catalog
from erpnext_streaming.constants import BUNDLE_TABLE, EVENT_LOG_TABLE, SETTINGS_DOCTYPE, Status
from erpnext_streaming.emitters import codec as codec_module
from erpnext_streaming.outbox.records import OutboxRecord
from erpnext_streaming.outbox.write import write
from erpnext_streaming.tests.utils import FailingDatabase

COMPANY = "Wind Power LLC"
OTHER = "Globex Ltd"
ROW_16 = "(" + ", ".join(["%s"] * 16) + ")"


def log_row(
	ref: str,
	status: str,
	created: datetime,
	*,
	company: str = COMPANY,
	topic: str = "erpnext.gl-entry",
	doctype: str = "GL Entry",
	sent_at: datetime | None = None,
	modified: datetime | None = None,
	error: str = "",
	attempts: int = 0,
	payload: bytes | None = None,
) -> int:
	"""Write one Event Log row through the outbox, then put it in `status` as of `created`."""
	record = OutboxRecord(
		event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"ops-test/{ref}")), event_type="posted",
		reference_doctype=doctype, reference_name=ref, company=company, event_time=created, topic=topic,
		message_key=company, schema_name="io.erpnext.streaming.GLEntryEvent", schema_version=1,
		schema_fingerprint="00", payload=f"payload of {ref}".encode() if payload is None else payload,
	)  # fmt: skip
	write(frappe.db, [record], created)
	name = frappe.db.sql(f"SELECT MAX(name) FROM `{EVENT_LOG_TABLE}`")[0][0]
	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET status = %s, creation = %s, modified = %s, sent_at = %s, "
		"last_error = %s, attempts = %s, kafka_partition = %s, kafka_offset = %s WHERE name = %s",
		(
			status,
			created,
			modified or sent_at or created,
			sent_at,
			error,
			attempts,
			0,
			name if status == Status.SENT else 0,
			name,
		),
	)
	if status in (Status.SENT, Status.DEAD):  # delivered (or given up) and settled: its bundle is gone
		frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}` WHERE name = (SELECT MAX(name) FROM `{BUNDLE_TABLE}`)")
	return name


def configure(**values) -> None:
	"""Streaming Settings with every built-in doctype in the catalog, enabled."""
	settings = {
		"enabled": 1,
		"bootstrap_servers": "127.0.0.1:1",
		"topic_prefix": "erpnext",
		"dead_letter_topic": "erpnext.dead-letter",
		"event_catalog": catalog.default_catalog_rows(),
		**values,
	}
	standin.set_single(SETTINGS_DOCTYPE, settings)
	catalog.clear_cache()
	if hasattr(frappe.local, codec_module._CODEC_ATTR):  # a codec of an earlier test's site
		delattr(frappe.local, codec_module._CODEC_ATTR)


def insert_invoices(
	count: int, *, company: str = COMPANY, start: date = date(2024, 1, 1), items: int = 2
) -> list[str]:
	"""`count` submitted Sales Invoices with `items` rows each, in a few multi-row INSERTs."""
	names = [f"ACC-SINV-{i:06d}" for i in range(1, count + 1)]
	parents, children = [], []
	for i, name in enumerate(names):
		day = start + timedelta(days=i % 365)
		modified = datetime(2024, 6, 1, 12, 0) + timedelta(seconds=i)
		parents.append(
			(name, modified, modified, "Administrator", "Administrator", 1, 0, f"CUST-{i % 97:03d}", company,
			 day, timedelta(hours=10, seconds=i % 3600), "INR", 100.0 + i, 0.0, "Paid", 0)
		)  # fmt: skip
		for idx in range(1, items + 1):
			children.append(
				(f"{name}-{idx}", modified, modified, "Administrator", "Administrator", 1, idx, name,
				 "items", "Sales Invoice", f"SKU-{idx:03d}", f"Item {idx}", float(idx), 50.0, 50.0 * idx,
				 "Stores - WP")
			)  # fmt: skip
	for start_at in range(0, len(parents), 2000):
		frappe.db.sql(
			"INSERT INTO `tabSales Invoice` (name, creation, modified, owner, modified_by, docstatus, idx, "
			"customer, company, posting_date, posting_time, currency, grand_total, outstanding_amount, status, "
			"is_return) VALUES " + ", ".join([ROW_16] * len(parents[start_at : start_at + 2000])),
			[v for row in parents[start_at : start_at + 2000] for v in row],
		)
	for start_at in range(0, len(children), 2000):
		frappe.db.sql(
			"INSERT INTO `tabSales Invoice Item` (name, creation, modified, owner, modified_by, docstatus, idx, "
			"parent, parentfield, parenttype, item_code, item_name, qty, rate, amount, warehouse) VALUES "
			+ ", ".join([ROW_16] * len(children[start_at : start_at + 2000])),
			[v for row in children[start_at : start_at + 2000] for v in row],
		)
	frappe.db.commit()
	return names


def event_log(columns: str = "name, event_id, reference_doctype, reference_name, event_type, status") -> list:
	frappe.db.commit()
	return frappe.db.sql(f"SELECT {columns} FROM `{EVENT_LOG_TABLE}` ORDER BY name", as_dict=True)
