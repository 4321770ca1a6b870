"""The drainer's marker connection on a real bench (twin of tests/test_delivery_marker.py):
`jobs.second_connection()` is a PyMySQL connection with the site's own settings, and the
marker records a delivered batch on it (`bundles.record_delivered`: a receipt and the
cursors moved) against the real delivery tables.

Never commits: not on `frappe.db`, and the marker's connection here rolls back where the
marker commits (after reading what its transaction wrote), so the site keeps no receipt
or cursor of these tests."""

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.constants import CURSOR_TABLE, RECEIPT_TABLE
from erpnext_streaming.delivery import jobs
from erpnext_streaming.delivery.connection import Connection
from erpnext_streaming.delivery.marker import Marker
from erpnext_streaming.outbox.records import Published

MISSING = 2**62  # no Event Log row has this name
CURSOR = "_ES Marker Test Co"  # a cursor no other test touches


class RollingBack(Connection):
	"""The marker's connection: records the statements, and at the marker's commit reads
	what the transaction wrote, then rolls it back."""

	def __init__(self, connection):
		super().__init__(connection)
		self.statements, self.written = [], None

	def sql(self, query, values=(), as_dict=False):
		self.statements.append(query.split()[0].upper())
		return super().sql(query, values, as_dict)

	def commit(self):
		self.statements.append("COMMIT")
		self.written = {
			"receipts": super().sql(
				f"SELECT `events`, `positions` FROM `{RECEIPT_TABLE}` WHERE `positions` LIKE %s",
				(f"%{MISSING}%",),
			),
			"cursor": super().sql(
				f"SELECT `delivered_through`, `attempts` FROM `{CURSOR_TABLE}` WHERE `name` = %s", (CURSOR,)
			),
		}
		self.rollback()


class FailingConnection(Connection):
	def sql(self, query, values=(), as_dict=False):
		if query.startswith("INSERT"):
			raise RuntimeError("the marker's connection is gone")
		return super().sql(query, values, as_dict)


class TestDeliveryMarker(FrappeTestCase):
	def test_the_second_connection_reaches_the_sites_database(self):
		connection = jobs.second_connection()
		try:
			self.assertEqual(connection.sql("SELECT DATABASE()")[0][0], frappe.conf.db_name)
		finally:
			connection.close()

	def test_the_marker_records_a_receipt_and_moves_the_cursor_in_one_read_committed_transaction(self):
		marker = Marker(RollingBack(frappe.db.create_connection()))
		try:
			marker.prepare()
			self.assertEqual(marker.db.sql("SELECT @@tx_isolation")[0][0], "READ-COMMITTED")
			marker.db.statements.clear()
			marker.submit(
				[Published(MISSING, 3, 41), Published(MISSING + 1, 3, 42)], {CURSOR: 7}, now_datetime()
			)
			marker.wait()
			self.assertEqual(marker.db.statements, ["INSERT", "INSERT", "COMMIT"])
			self.assertEqual(
				marker.db.written,
				{
					"receipts": ((2, f"[[{MISSING},3,41],[{MISSING + 1},3,42]]"),),
					"cursor": ((7, 0),),
				},
			)
		finally:
			marker.close()

	def test_a_batch_with_nothing_to_record_sends_nothing(self):
		marker = Marker(RollingBack(frappe.db.create_connection()))
		try:
			marker.submit([], {}, now_datetime())
			marker.wait()
			self.assertEqual(marker.db.statements, [])
		finally:
			marker.close()

	def test_a_failed_record_is_raised_in_the_drainers_thread_once(self):
		marker = Marker(FailingConnection(frappe.db.create_connection()))
		try:
			marker.submit([Published(MISSING, 0, 1)], {CURSOR: 7}, now_datetime())
			with self.assertRaisesRegex(RuntimeError, "connection is gone"):
				marker.wait()
			marker.wait()
		finally:
			marker.close()
