"""The upgrade patch on a real bench (patches/v1_0/queue_pending_events.py): the Queued and
Failed rows an earlier version left behind, which have no delivery bundle, are queued in
bundles, in name order, and the delivery queue then hands them out like any other.

Never commits: the test transaction is rolled back. `execute()` itself is not called (it
may drop an index, DDL that would commit); `queue_pending` is what it runs.
"""

from datetime import timedelta

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.constants import BUNDLE_DOCTYPE, CURSOR_DOCTYPE, EVENT_LOG_DOCTYPE, Status
from erpnext_streaming.delivery import bundles, messages
from erpnext_streaming.emitters import handler
from erpnext_streaming.outbox.write import write as write_outbox
from erpnext_streaming.patches.v1_0 import queue_pending_events
from erpnext_streaming.tests.delivery_records import (
	bundle_rows,
	clear_delivery_tables,
	outbox_record,
	read_bundle,
)

A, A_SPELLED_OTHERWISE, B = "_ES Upgrade A", "_es upgrade a ", "_ES Upgrade B"
LEASE = timedelta(seconds=120)


def record(ref, company, status=Status.QUEUED):
	return outbox_record(ref, company, status, prefix="upgrade-test")


class TestQueuePendingEvents(FrappeTestCase):
	def setUp(self):
		clear_delivery_tables()
		self.now = now_datetime()
		write_outbox(frappe.db, [record("a1", A), record("b1", B), record("a2", A)], self.now)
		write_outbox(
			frappe.db, [record("a3", A_SPELLED_OTHERWISE), record("b2", B), record("s1", A)], self.now
		)
		write_outbox(frappe.db, [record("f1", A), record("x1", A, Status.DEAD), record("d1", B)], self.now)
		# what an earlier version left: no delivery queue at all, rows Sent, Failed (with
		# their row-by-row retry state and lease) and Dead
		frappe.db.delete(BUNDLE_DOCTYPE)
		frappe.db.delete(CURSOR_DOCTYPE)
		self.names = dict(
			frappe.db.sql(f"SELECT reference_name, name FROM `tab{EVENT_LOG_DOCTYPE}` ORDER BY name")
		)
		self.set("s1", status=Status.SENT, kafka_partition=1, kafka_offset=10, sent_at=self.now)
		self.set(
			"f1",
			status=Status.FAILED,
			attempts=2,
			last_error="timeout",
			next_attempt_at=self.now + timedelta(minutes=5),
		)
		self.set("b2", lease_owner="old-drainer", lease_expires_at=self.now + LEASE)
		self.set("d1", status=Status.DEAD, attempts=5, last_error="refused")

	def tearDown(self):
		frappe.db.rollback()

	def set(self, ref, **values):
		frappe.db.set_value(EVENT_LOG_DOCTYPE, self.names[ref], values, update_modified=False)

	def queued_refs(self, bundle_list, messages_of=lambda b: b["messages"]):
		"""The bundles' events as reference names, bundle by bundle."""
		ref_of = {name: ref for ref, name in self.names.items()}
		return [[ref_of[name] for name in messages.refs(messages_of(b))] for b in bundle_list]

	def test_rows_left_pending_get_bundles_per_company_in_name_order(self):
		self.assertEqual(bundle_rows(), [])
		queued = queue_pending_events.queue_pending(frappe.db, self.now, handler.message_context(), chunk=3)
		self.assertEqual(queued, 6)  # a1 b1 a2 a3 b2 f1: Sent and Dead rows are done
		got = bundle_rows()
		# chunks of three rows in name order: (a1 b1 a2) (a3 b2 f1), a bundle per company
		# each; the spellings the database holds as one company share its bundle
		self.assertEqual(self.queued_refs(got), [["a1", "a2"], ["b1"], ["a3", "f1"], ["b2"]])
		self.assertEqual([b["events"] for b in got], [2, 1, 2, 1])
		sequence = dict(
			frappe.db.sql(f"SELECT name, company_sequence FROM `tab{EVENT_LOG_DOCTYPE}` ORDER BY name")
		)
		for bundle in got:
			self.assertEqual(bundle["failed"], {})
			self.assertEqual([m.ref for m in bundle["ready"]], bundle["refs"])
			for message in bundle["ready"]:
				self.assertEqual(message.headers["ce_source"], frappe.local.site)
				self.assertEqual(message.headers["es_company_sequence"], str(sequence[message.ref]))
		# the rows themselves are not touched
		self.assertEqual(
			frappe.db.get_value(EVENT_LOG_DOCTYPE, self.names["f1"], ["status", "attempts"]),
			(Status.FAILED, 2),
		)

	def test_the_delivery_queue_then_hands_them_out_in_each_companys_order_before_new_commits(self):
		queue_pending_events.queue_pending(frappe.db, self.now, handler.message_context())
		write_outbox(
			frappe.db, [record("a4", A), record("b3", B)], self.now, context=handler.message_context()
		)
		self.names.update(
			frappe.db.sql(
				f"SELECT reference_name, name FROM `tab{EVENT_LOG_DOCTYPE}` WHERE reference_name IN ('a4', 'b3')"
			)
		)
		claimed = bundles.claim(frappe.db, "d1", self.now + LEASE, self.now, 100)
		by_cursor = {}
		for bundle in claimed:
			by_cursor.setdefault(bundle.cursor, []).extend(
				self.queued_refs([bundle], lambda b: b.messages)[0]
			)
		self.assertEqual(by_cursor, {A: ["a1", "a2", "a3", "f1", "a4"], B: ["b1", "b2", "b3"]})
		# ready to produce as they are: the stored payload, keyed by company
		first = read_bundle(claimed[0].messages)[0][0]
		self.assertEqual((first.ref, first.key, first.value), (self.names["a1"], A, b"\x01"))
		# the old retry schedule of f1 is not carried over: its company is due at once
		self.assertEqual(frappe.db.count(CURSOR_DOCTYPE, {"attempts": ("!=", 0)}), 0)

	def test_rows_already_in_a_bundle_are_not_queued_twice(self):
		"""A commit of the new code before the patch ran has its bundle: the patch skips it."""
		write_outbox(frappe.db, [record("a5", A)], self.now, context=handler.message_context())
		queued = queue_pending_events.queue_pending(frappe.db, self.now, handler.message_context())
		self.assertEqual(queued, 6)  # not a5
		refs = [name for b in bundle_rows() for name in b["refs"]]
		self.assertEqual(sorted(refs), sorted(set(refs)))  # every event in one bundle only
		self.assertEqual(refs.count(frappe.db.get_value(EVENT_LOG_DOCTYPE, {"reference_name": "a5"})), 1)
