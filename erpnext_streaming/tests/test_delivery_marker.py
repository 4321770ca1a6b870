"""The drainer's marker connection on a real bench (twin of tests/test_delivery_marker.py):
`jobs.second_connection()` is a PyMySQL connection with the site's own settings, and the
marker's Sent UPDATE runs on it against the real Event Log table.

Never commits on `frappe.db`. The marker's connection only touches names that do not
exist (the test transaction's rows are invisible to it, and locked)."""

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.delivery import jobs
from erpnext_streaming.delivery.connection import Connection
from erpnext_streaming.delivery.marker import Marker
from erpnext_streaming.outbox import Published

MISSING = 2**62  # no Event Log row has this name


class FailingConnection(Connection):
	def sql(self, query, values=(), as_dict=False):
		if query.startswith("UPDATE"):
			raise RuntimeError("the marker's connection is gone")
		return super().sql(query, values, as_dict)


class Recording(Connection):
	def __init__(self, connection):
		super().__init__(connection)
		self.statements = []

	def sql(self, query, values=(), as_dict=False):
		self.statements.append(query.split()[0])
		return super().sql(query, values, as_dict)

	def commit(self):
		self.statements.append("COMMIT")
		super().commit()


class TestDeliveryMarker(FrappeTestCase):
	def test_the_second_connection_reaches_the_sites_database(self):
		connection = jobs.second_connection()
		try:
			self.assertEqual(connection.sql("SELECT DATABASE()")[0][0], frappe.conf.db_name)
		finally:
			connection.close()

	def test_the_marker_marks_in_read_committed_with_valid_sql_on_the_real_table(self):
		marker = Marker(Recording(frappe.db.create_connection()))
		try:
			marker.prepare()
			self.assertEqual(marker.db.sql("SELECT @@tx_isolation")[0][0], "READ-COMMITTED")
			marker.submit([Published(MISSING, 0, 1)], now_datetime())
			marker.wait()
			self.assertEqual(marker.db.statements[-2:], ["UPDATE", "COMMIT"])
		finally:
			marker.close()

	def test_a_failed_mark_is_raised_in_the_drainers_thread_once(self):
		marker = Marker(FailingConnection(frappe.db.create_connection()))
		try:
			marker.submit([Published(MISSING, 0, 1)], now_datetime())
			with self.assertRaisesRegex(RuntimeError, "connection is gone"):
				marker.wait()
			marker.wait()
		finally:
			marker.close()
