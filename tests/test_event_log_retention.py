"""Streaming Event Log retention: only old Sent rows go; dead letters and pending rows stay."""

from __future__ import annotations

from datetime import datetime, timedelta

import frappe
import pytest

from erpnext_streaming.constants import Status
from erpnext_streaming.outbox.outcomes import clear_old_logs
from erpnext_streaming.outbox.records import OutboxRecord
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration


def record(name: str, company: str = "ACME") -> OutboxRecord:
	return OutboxRecord(
		event_id=f"id-{name}", event_type="submitted", reference_doctype="Sales Invoice", reference_name=name,
		company=company, event_time=None, topic="erpnext.sales-invoice", message_key=company,
		schema_name="io.erpnext.streaming.SalesInvoice", schema_version=1, schema_fingerprint="00",
		payload=b"\x00\x01",
	)  # fmt: skip


def test_clear_old_logs_deletes_only_sent_rows_older_than_the_retention(site):
	now = datetime(2026, 11, 23, 12, 0, 0)
	old, recent = now - timedelta(days=31), now - timedelta(days=29)
	write(frappe.db, [record(f"SINV-{i}") for i in range(8)], now)
	names = [r[0] for r in frappe.db.sql("SELECT name FROM `tabStreaming Event Log` ORDER BY name")]
	states = [
		(Status.SENT, old),
		(Status.SENT, recent),
		(Status.DEAD, old),
		(Status.DEAD, recent),
		(Status.FAILED, old),
		(Status.QUEUED, old),
		(Status.SENT, old),
		(Status.QUEUED, recent),
	]
	for name, (status, modified) in zip(names, states, strict=True):
		frappe.db.sql(
			"UPDATE `tabStreaming Event Log` SET status = %s, modified = %s WHERE name = %s",
			(status, modified, name),
		)

	clear_old_logs(frappe.db, days=30, now=now)

	left = frappe.db.sql("SELECT name, status FROM `tabStreaming Event Log` ORDER BY name")
	kept = [(n, s) for (n, (s, _)) in zip(names, states, strict=True) if not (s == Status.SENT and _ == old)]
	assert list(left) == kept
	assert {s for _, s in left} == {Status.SENT, Status.DEAD, Status.FAILED, Status.QUEUED}
	assert sum(1 for _, s in left if s == Status.DEAD) == 2  # old dead letters stay


def test_retention_deletes_in_committed_chunks_by_name_under_read_committed(site, mariadb):
	"""Each chunk is its own short READ COMMITTED transaction: no next-key locks over the
	range users' outbox INSERTs need, no undo log of a whole month, progress that survives."""
	import pymysql

	now = datetime(2026, 11, 23, 12, 0, 0)
	write(frappe.db, [record(f"SINV-{i}") for i in range(11)], now)
	names = [r[0] for r in frappe.db.sql("SELECT name FROM `tabStreaming Event Log` ORDER BY name")]
	kept = set(names[3::4])  # every fourth row is recent; the rest are old Sent rows
	for name in names:
		modified = now - timedelta(days=1 if name in kept else 40)
		frappe.db.sql(
			"UPDATE `tabStreaming Event Log` SET status = %s, modified = %s WHERE name = %s",
			(Status.SENT, modified, name),
		)
	frappe.db.commit()  # the rows exist before retention runs, as on a site
	level = frappe.db.sql("SELECT @@SESSION.tx_isolation")[0][0]

	deleted = clear_old_logs(frappe.db, days=30, now=now, chunk=3)

	assert deleted == len(names) - len(kept)
	assert frappe.db.sql("SELECT @@SESSION.tx_isolation")[0][0] == level, "the session's level is restored"
	other = pymysql.connect(**{k: v for k, v in mariadb.items() if k != "tables"})
	try:
		with other.cursor() as cur:  # committed: another connection sees it without our commit
			cur.execute("SELECT name FROM `tabStreaming Event Log`")
			assert {r[0] for r in cur.fetchall()} == kept
	finally:
		other.close()
