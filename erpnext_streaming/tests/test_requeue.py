"""Manual requeue on a real bench (twin of tests/test_requeue.py). Never commits."""

import inspect
from datetime import timedelta

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming import api
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, Status
from erpnext_streaming.delivery import wake
from erpnext_streaming.outbox.mariadb import utc_now
from erpnext_streaming.outbox.write import write
from erpnext_streaming.tests.delivery_records import bundle_rows, clear_delivery_tables, outbox_record


def record(ref, company):
	return outbox_record(ref, company, prefix="requeue-test")


class TestRequeue(FrappeTestCase):
	def setUp(self):
		clear_delivery_tables()
		now = now_datetime()
		labels = {
			"queued": Status.QUEUED,
			"sent": Status.SENT,
			"failed": Status.FAILED,
			"dead": Status.DEAD,
			"in_flight": Status.FAILED,
		}
		write(frappe.db, [record(label, "_ES Requeue Co") for label in labels], now)
		self.names = {}
		for label, status in labels.items():
			name = frappe.db.get_value(EVENT_LOG_DOCTYPE, {"event_id": f"requeue-test-{label}"})
			self.names[label] = name
			frappe.db.set_value(
				EVENT_LOG_DOCTYPE,
				name,
				{"status": status, "attempts": 3, "last_error": "boom"},
				update_modified=False,
			)
		frappe.db.set_value(
			EVENT_LOG_DOCTYPE,
			self.names["in_flight"],
			# leases are UTC from the database's clock
			{"lease_owner": "a-drainer", "lease_expires_at": utc_now(frappe.db) + timedelta(minutes=5)},
			update_modified=False,
		)

	def tearDown(self):
		frappe.set_user("Administrator")
		frappe.db.rollback()

	def status(self, label):
		return frappe.db.get_value(EVENT_LOG_DOCTYPE, self.names[label], ["status", "attempts"])

	def test_callers_without_system_manager_are_refused(self):
		in_test = frappe.flags.in_test
		frappe.flags.in_test = False  # frappe.only_for lets everything through in tests
		try:
			frappe.set_user("Guest")
			with self.assertRaises(frappe.PermissionError):
				api.requeue(names=[self.names["failed"]])
		finally:
			frappe.flags.in_test = in_test
			frappe.set_user("Administrator")
		self.assertEqual(self.status("failed"), (Status.FAILED, 3))

	def test_only_failed_and_dead_rows_are_requeued_all_or_nothing(self):
		for label in ("queued", "sent", "in_flight"):
			with self.assertRaises(frappe.ValidationError):
				api.requeue(names=frappe.as_json([self.names["failed"], self.names[label]]))
			self.assertEqual(self.status("failed"), (Status.FAILED, 3))
		result = api.requeue(names=[self.names["failed"], self.names["dead"]])
		self.assertEqual(result["requeued"], 2)
		self.assertEqual(self.status("failed"), (Status.QUEUED, 0))
		self.assertEqual(self.status("dead"), (Status.QUEUED, 0))
		self.assertIn(wake.after_commit, frappe.db.after_commit._functions)
		# the Dead event is queued again, at the end of its company's queue, for this site
		newest = bundle_rows()[-1]
		self.assertEqual(newest["refs"], [self.names["dead"]])
		self.assertEqual(newest["ready"][0].headers["ce_source"], frappe.local.site)

	def test_a_filter_matches_only_failed_or_dead_rows_not_in_flight(self):
		result = api.requeue(filters={"company": "_ES Requeue Co"})
		self.assertEqual(sorted(result["names"]), sorted([self.names["failed"], self.names["dead"]]))
		for bad in ({"status": "Sent"}, {"payload": "x"}):
			with self.assertRaises(frappe.ValidationError):
				api.requeue(filters=bad)

	def test_requeue_takes_no_method_path(self):
		self.assertEqual(list(inspect.signature(api.requeue).parameters), ["names", "filters"])
