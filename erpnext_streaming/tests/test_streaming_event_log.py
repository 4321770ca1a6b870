"""Streaming Event Log retention on a real bench (twin of tests/test_event_log_retention.py)."""

from datetime import timedelta

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.constants import BUNDLE_TABLE, EVENT_LOG_DOCTYPE, EVENT_LOG_TABLE, Status
from erpnext_streaming.outbox.records import OutboxRecord
from erpnext_streaming.outbox.write import write


def record(name):
	return OutboxRecord(
		event_id=f"retention-{name}",
		event_type="submitted",
		reference_doctype="Sales Invoice",
		reference_name=name,
		company="_ES Retention Co",
		event_time=None,
		topic="erpnext.sales-invoice",
		message_key="_ES Retention Co",
		schema_name="io.erpnext.streaming.SalesInvoiceEvent",
		schema_version=1,
		schema_fingerprint="00",
		payload=b"\x00",
	)


class TestStreamingEventLogRetention(FrappeTestCase):
	"""Retention commits per chunk, so this test's rows are committed: none is left to deliver
	(no bundle holds them), and they are deleted at the end."""

	def tearDown(self):
		frappe.db.rollback()
		frappe.db.sql(f"DELETE FROM `{EVENT_LOG_TABLE}` WHERE `event_id` LIKE 'retention-%%'")
		frappe.db.commit()  # retention committed this test's rows: delete them for good

	def test_clear_old_logs_deletes_old_sent_rows_and_keeps_dead_letters(self):
		now = now_datetime()
		write(frappe.db, [record(f"RET-{i}") for i in range(4)], now)
		rows = frappe.get_all(
			EVENT_LOG_DOCTYPE,
			filters={"event_id": ("like", "retention-%")},
			pluck="name",
			order_by="name asc",
		)
		frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}` WHERE `company` = %s", "_ES Retention Co")
		old = now - timedelta(days=40)
		for name, status in zip(rows, (Status.SENT, Status.DEAD, Status.FAILED, Status.SENT), strict=True):
			frappe.db.set_value(
				EVENT_LOG_DOCTYPE, name, {"status": status, "dead_lettered_at": now}, update_modified=False
			)
		for name in rows[:3]:
			frappe.db.set_value(EVENT_LOG_DOCTYPE, name, "modified", old, update_modified=False)

		frappe.get_doc("Log Settings").register_doctype(EVENT_LOG_DOCTYPE, 30)
		frappe.get_attr(
			"erpnext_streaming.erpnext_streaming.doctype.streaming_event_log.streaming_event_log.StreamingEventLog"
		).clear_old_logs(days=30)

		left = frappe.get_all(
			EVENT_LOG_DOCTYPE, filters={"event_id": ("like", "retention-%")}, fields=["name", "status"]
		)
		self.assertEqual(
			sorted((r.name, r.status) for r in left),
			sorted([(rows[1], Status.DEAD), (rows[2], Status.FAILED), (rows[3], Status.SENT)]),
		)
