"""The delivery queue on a real bench (twin of tests/test_delivery_bundles.py): claiming
bundles through per-company cursors and their leases, delivered batches recorded as
receipts and settled into the Event Log, Failed and Dead outcomes, retries that hold their
company back (delivery/bundles.py).

Never commits: every test runs in the test transaction and rolls back. The Event Log and
the delivery queue are emptied inside that transaction, so claims see only this test's
bundles.
"""

from datetime import timedelta

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, RECEIPT_DOCTYPE, Status
from erpnext_streaming.delivery import bundles, messages, sweeper
from erpnext_streaming.emitters import handler
from erpnext_streaming.outbox.outcomes import claim_dead_letters, mark_dead_lettered, mark_unsent
from erpnext_streaming.outbox.records import NO_COMPANY_BUCKET, Lease, Published, Unsent
from erpnext_streaming.outbox.requeue import requeue
from erpnext_streaming.outbox.write import write
from erpnext_streaming.tests.delivery_records import (
	bundle_rows,
	clear_delivery_tables,
	cursor_rows,
	outbox_record,
)
from erpnext_streaming.tests.utils import unsettled

A, B, C = "_ES Test A", "_ES Test B", "_ES Test C"
LEASE = timedelta(seconds=120)


class TestDeliveryBundles(FrappeTestCase):
	def setUp(self):
		clear_delivery_tables()
		self.now = now_datetime()
		self.names = {}  # reference name: Event Log name

	def tearDown(self):
		frappe.db.rollback()

	# -- helpers ----------------------------------------------------------------------

	def commit(self, *events, at=None):
		"""One transaction's events ((ref, company[, status]), ...) through the outbox, as the
		handler's flush writes them: one bundle per company. Returns the new rows' names."""
		write(
			frappe.db,
			[outbox_record(*event) for event in events],
			at or self.now,
			context=handler.message_context(),
		)
		for name, ref in frappe.db.sql(f"SELECT name, reference_name FROM `tab{EVENT_LOG_DOCTYPE}`"):
			self.names[ref] = name
		return [self.names[event[0]] for event in events]

	def claim(self, owner, now=None, limit=100, after=None):
		now = now or self.now
		return bundles.claim(frappe.db, owner, now + LEASE, now, limit, after=after)

	def refs(self, claimed):
		"""The claimed bundles' events as reference names, bundle by bundle."""
		ref_of = {name: ref for ref, name in self.names.items()}
		return [[ref_of[name] for name in messages.refs(b.messages)] for b in claimed]

	def row(self, ref, *fields):
		return frappe.db.get_value(EVENT_LOG_DOCTYPE, self.names[ref], list(fields), as_dict=True)

	def deliver(self, claimed, positions=None, now=None):
		"""What the drainer records for a batch delivered in full: a receipt with each event's
		partition and offset, and the cursors moved past the batch's bundles."""
		sent, through = [], {}
		for bundle in claimed:
			through[bundle.cursor] = bundle.name
			for name in messages.refs(bundle.messages):
				partition, offset = (positions or {}).get(name, (0, name))
				sent.append(Published(name, partition, offset))
		bundles.record_delivered(frappe.db, sent, through, now or self.now)
		return sent

	# -- claiming ---------------------------------------------------------------------

	def test_a_claim_returns_each_companys_bundles_in_name_order_and_leases_their_cursors(self):
		self.commit(("a1", A), ("b1", B), ("a2", A))
		self.commit(("x1", ""), ("a3", A))
		claimed = self.claim("d1")
		self.assertEqual(self.refs(claimed), [["a1", "a2"], ["b1"], ["x1"], ["a3"]])
		self.assertEqual([b.cursor for b in claimed], [A, B, NO_COMPANY_BUCKET, A])
		self.assertEqual([b.name for b in claimed], sorted(b.name for b in claimed))
		self.assertEqual([b.events for b in claimed], [2, 1, 1, 1])
		cursors = cursor_rows()
		self.assertEqual(sorted(cursors), sorted([A, B, NO_COMPANY_BUCKET]))
		for cursor in cursors.values():
			self.assertEqual(
				(cursor.lease_owner, cursor.lease_expires_at, cursor.delivered_through),
				("d1", self.now + LEASE, 0),
			)
		# claiming moves nothing: the Event Log rows stay as written
		self.assertEqual({self.row(r, "status").status for r in self.names}, {Status.QUEUED})

	def test_a_company_leased_by_another_drainer_yields_nothing_until_its_lease_expires(self):
		self.commit(("a1", A), ("b1", B))
		self.assertEqual(self.refs(self.claim("d1")), [["a1"], ["b1"]])
		self.commit(("a2", A), ("c1", C))
		self.assertEqual(self.refs(self.claim("d2")), [["c1"]])
		self.assertEqual(cursor_rows()[A].lease_owner, "d1")
		later = self.now + LEASE + timedelta(seconds=1)
		# d1 died: after its lease, d2 delivers A from its cursor, d1's claim included (at least once)
		self.assertEqual(self.refs(self.claim("d2", now=later)), [["a1"], ["b1"], ["a2"], ["c1"]])
		self.assertEqual({c.lease_owner for c in cursor_rows().values()}, {"d2"})

	def test_a_claimer_continues_a_company_after_its_own_bundles_in_flight(self):
		for ref, company in (("a1", A), ("b1", B), ("a2", A), ("b2", B)):
			self.commit((ref, company))
		first = self.claim("d1", limit=2)
		self.assertEqual(self.refs(first), [["a1"], ["b1"]])
		self.assertEqual(self.claim("d2"), [])
		after = {b.cursor: b.name for b in first}
		self.assertEqual(self.refs(self.claim("d1", after=after)), [["a2"], ["b2"]])
		# without `after` (say, a restarted drainer) the company starts again at its cursor
		self.assertEqual(self.refs(self.claim("d1")), [["a1"], ["b1"], ["a2"], ["b2"]])

	def test_companies_the_database_holds_as_one_name_share_one_cursor(self):
		self.commit(("a1", A))
		self.commit(("a2", "_es test a "))
		claimed = self.claim("d1")
		self.assertEqual(self.refs(claimed), [["a1"], ["a2"]])
		self.assertEqual(len(cursor_rows()), 1)
		self.assertEqual(len({b.cursor for b in claimed}), 1)
		self.deliver(claimed[:1])
		self.assertEqual(self.refs(self.claim("d2", now=self.now + LEASE + timedelta(seconds=1))), [["a2"]])

	# -- delivered batches: receipts, settling ----------------------------------------

	def test_a_delivered_batch_is_a_receipt_settled_into_sent_rows_with_partition_and_offset(self):
		a1, b1, a2 = self.commit(("a1", A), ("b1", B), ("a2", A))
		claimed = self.claim("d1")
		self.deliver(claimed, positions={a1: (2, 40), a2: (2, 41), b1: (5, 7)})
		self.assertEqual(frappe.db.count(RECEIPT_DOCTYPE), 1)
		self.assertEqual(unsettled(frappe.db), 3)
		# delivered, not settled yet: the rows still read Queued, but nothing waits
		self.assertEqual({self.row(r, "status").status for r in ("a1", "b1", "a2")}, {Status.QUEUED})
		self.assertIsNone(bundles.oldest_undelivered(frappe.db))
		self.assertEqual(self.claim("d1"), [])
		self.assertFalse(sweeper.has_pending_work(frappe.db, self.now))
		self.assertEqual(
			{(c.delivered_through, c.attempts) for c in cursor_rows().values()},
			{(claimed[0].name, 0), (claimed[1].name, 0)},
		)

		settled_at = self.now + timedelta(seconds=5)
		self.assertEqual(bundles.settle(frappe.db, settled_at), 3)
		fields = ("status", "kafka_partition", "kafka_offset", "sent_at", "lease_owner", "modified")
		self.assertEqual(
			[tuple(self.row(r, *fields).values()) for r in ("a1", "a2", "b1")],
			[
				(Status.SENT, 2, 40, self.now, None, settled_at),
				(Status.SENT, 2, 41, self.now, None, settled_at),
				(Status.SENT, 5, 7, self.now, None, settled_at),
			],
		)
		self.assertEqual(frappe.db.count(RECEIPT_DOCTYPE), 0)
		self.assertEqual(bundle_rows(), [])  # every cursor passed them
		self.assertEqual(bundles.settle(frappe.db, settled_at), 0)

	def test_settling_keeps_the_bundles_no_cursor_has_passed(self):
		self.commit(("a1", A))
		self.commit(("a2", A), ("b1", B))
		claimed = self.claim("d1")
		self.deliver(claimed[:1])  # A's first bundle only
		bundles.settle(frappe.db, self.now)
		self.assertEqual([b["refs"] for b in bundle_rows()], [[self.names["a2"]], [self.names["b1"]]])
		self.assertEqual(self.row("a1", "status").status, Status.SENT)
		self.assertEqual(self.row("a2", "status").status, Status.QUEUED)

	def test_a_late_record_never_moves_a_cursor_back(self):
		self.commit(("a1", A))
		self.commit(("a2", A))
		first, second = self.claim("d1")
		bundles.record_delivered(frappe.db, [], {A: second.name}, self.now)
		bundles.record_delivered(frappe.db, [], {A: first.name}, self.now)
		self.assertEqual(cursor_rows()[A].delivered_through, second.name)

	def test_a_settled_receipt_never_overwrites_a_row_marked_dead_since(self):
		(a1,) = self.commit(("a1", A))
		self.deliver(self.claim("d1"), positions={a1: (1, 9)})
		mark_unsent(frappe.db, [Unsent(a1, Status.DEAD, 1, "poison")], self.now)
		bundles.settle(frappe.db, self.now)
		self.assertEqual(tuple(self.row("a1", "status", "last_error").values()), (Status.DEAD, "poison"))

	# -- undelivered events: Failed, Dead, retries ------------------------------------

	def test_mark_unsent_records_failed_and_dead_outcomes_and_leaves_sent_rows_alone(self):
		a1, a2 = self.commit(("a1", A), ("a2", A))
		(a3,) = self.commit(("a3", B))
		self.deliver([b for b in self.claim("d1") if b.cursor == B], positions={a3: (4, 44)})
		bundles.settle(frappe.db, self.now)  # a3 is Sent
		due = self.now + timedelta(seconds=30)
		mark_unsent(
			frappe.db,
			[
				Unsent(a1, Status.FAILED, 1, "timeout", next_attempt_at=due),
				Unsent(a2, Status.DEAD, 3, "too large", dead_letter=Published(a2, 0, 9)),
				Unsent(a3, Status.FAILED, 1, "late"),
			],
			self.now,
		)
		fields = ("status", "attempts", "last_error", "next_attempt_at", "dead_lettered_at")
		self.assertEqual(
			[tuple(self.row(r, *fields).values()) for r in ("a1", "a2", "a3")],
			[
				(Status.FAILED, 1, "timeout", due, None),
				(Status.DEAD, 3, "too large", None, self.now),
				(Status.SENT, 0, "", None, None),
			],
		)
		# the Dead row's dead-letter copy, and the Sent row's own message, keep their positions
		self.assertEqual(tuple(self.row("a2", "kafka_partition", "kafka_offset").values()), (0, 9))
		self.assertEqual(tuple(self.row("a3", "kafka_partition", "kafka_offset").values()), (4, 44))

	def test_a_retry_holds_its_company_back_until_due(self):
		a1, _ = self.commit(("a1", A), ("b1", B))
		self.commit(("a2", A))
		claimed = self.claim("d1")
		self.assertEqual(self.refs(claimed), [["a1"], ["b1"], ["a2"]])
		# the batch: a1 failed (retriable), b1 delivered; A's cursor stays before a1's bundle
		due = self.now + LEASE * 5
		self.deliver([b for b in claimed if b.cursor == B])
		bundles.record_retry(frappe.db, "d1", A, 1, due, "timeout", self.now)
		mark_unsent(frappe.db, [Unsent(a1, Status.FAILED, 1, "timeout", next_attempt_at=due)], self.now)
		self.assertEqual(
			tuple(self.row("a1", "status", "attempts", "next_attempt_at").values()), (Status.FAILED, 1, due)
		)
		self.assertEqual(bundles.next_attempt_due(frappe.db), due)
		expired = self.now + LEASE + timedelta(seconds=1)  # d1's lease is over, the retry not due
		self.assertFalse(sweeper.has_pending_work(frappe.db, expired))
		self.assertTrue(sweeper.has_pending_work(frappe.db, due))
		self.commit(("b2", B))
		self.assertEqual(self.refs(self.claim("d1")), [["b2"]])  # A waits, B goes on
		# when d1's leases are over another drainer may take B, but A still waits for its retry
		taken = self.claim("d2", now=expired)
		self.assertEqual(self.refs(taken), [["b2"]])
		self.assertEqual(cursor_rows()[A].lease_owner, "d1")
		self.deliver(taken)
		retried = self.claim("d1", now=due + timedelta(seconds=1))
		self.assertEqual(self.refs(retried), [["a1"], ["a2"]])
		self.assertEqual([b.attempts for b in retried], [1, 0])  # A's next bundle carries its attempts
		self.assertEqual(cursor_rows()[A].last_error, "timeout")
		# once delivered, the company's retry state is cleared
		self.deliver(retried)
		self.assertEqual(
			(cursor_rows()[A].attempts, cursor_rows()[A].next_attempt_at, cursor_rows()[A].last_error),
			(0, None, ""),
		)

	def test_a_retry_is_recorded_only_while_its_drainer_leases_the_company(self):
		self.commit(("a1", A))
		self.claim("d1")
		later = self.now + LEASE + timedelta(seconds=1)
		self.claim("d2", now=later)  # d1's lease expired and d2 took A
		bundles.record_retry(frappe.db, "d1", A, 1, later + timedelta(seconds=30), "timeout", later)
		self.assertEqual((cursor_rows()[A].attempts, cursor_rows()[A].next_attempt_at), (0, None))

	def test_a_requeued_failed_event_makes_its_company_due_now(self):
		(a1,) = self.commit(("a1", A))
		self.claim("d1")
		due = self.now + timedelta(minutes=10)
		bundles.record_retry(frappe.db, "d1", A, 4, due, "timeout", self.now)
		mark_unsent(frappe.db, [Unsent(a1, Status.FAILED, 4, "timeout", next_attempt_at=due)], self.now)
		bundles.release(frappe.db, "d1")
		self.assertEqual(self.claim("d2"), [])
		requeue(frappe.db, [a1], self.now)
		self.assertEqual(self.refs(self.claim("d2")), [["a1"]])
		self.assertEqual(cursor_rows()[A].attempts, 0)

	def test_a_requeued_dead_event_gets_a_new_bundle_at_the_end_of_its_companys_queue(self):
		(a1,) = self.commit(("a1", A))
		self.deliver(self.claim("d1"))
		mark_unsent(
			frappe.db, [Unsent(a1, Status.DEAD, 1, "refused", dead_letter=Published(a1, 0, 1))], self.now
		)
		bundles.settle(frappe.db, self.now)
		self.commit(("a2", A))
		requeue(frappe.db, [a1], self.now, context=handler.message_context())
		self.assertEqual(self.refs(self.claim("d1")), [["a2"], ["a1"]])
		self.assertEqual(self.row("a1", "status").status, Status.QUEUED)

	# -- leases -----------------------------------------------------------------------

	def test_a_drainer_knows_which_companies_it_still_leases_and_renews_only_those(self):
		self.commit(("a1", A), ("b1", B))
		self.claim("d1")
		later = self.now + LEASE + timedelta(seconds=1)
		self.claim("d2", now=later)  # both expired: d2 takes A and B
		frappe.db.set_value("Streaming Delivery Cursor", A, "lease_owner", "d1", update_modified=False)
		self.assertEqual(bundles.still_leased(frappe.db, "d1", [A, B]), {A})
		until = later + LEASE * 2
		self.assertEqual(bundles.renew(frappe.db, "d1", [A, B], until), {A})
		self.assertEqual(cursor_rows()[A].lease_expires_at, until)
		self.assertEqual(cursor_rows()[B].lease_expires_at, later + LEASE)

	def test_a_released_or_expired_lease_frees_the_company(self):
		self.commit(("a1", A), ("b1", B))
		self.claim("d1")
		bundles.release(frappe.db, "d1", [A])
		self.assertEqual(self.refs(self.claim("d2")), [["a1"]])
		after = self.now + LEASE + timedelta(seconds=1)
		self.assertEqual(bundles.release_expired(frappe.db, self.now), [])
		self.assertEqual(sorted(bundles.release_expired(frappe.db, after)), [A, B])
		self.assertEqual({c.lease_owner for c in cursor_rows().values()}, {None})

	# -- what is left to do -----------------------------------------------------------

	def test_capture_dead_rows_wait_for_their_dead_letter_copy_not_in_a_bundle(self):
		_, broken = self.commit(("ok", A), ("broken", A, Status.DEAD))
		claimed = self.claim("d1")
		self.assertEqual(self.refs(claimed), [["ok"]])
		self.deliver(claimed)
		expired = self.now + LEASE + timedelta(seconds=1)
		self.assertTrue(sweeper.has_pending_work(frappe.db, expired))  # the copy of "broken"
		dead = claim_dead_letters(frappe.db, Lease("d1", self.now + LEASE), self.now, 10)
		self.assertEqual([r["name"] for r in dead], [broken])
		self.assertFalse(sweeper.has_pending_work(frappe.db, self.now))  # in flight
		mark_dead_lettered(frappe.db, [Published(broken, 0, 3)], self.now)
		self.assertFalse(sweeper.has_pending_work(frappe.db, expired))
		self.assertEqual(
			tuple(self.row("broken", "dead_lettered_at", "kafka_offset").values()), (self.now, 3)
		)

	def test_the_oldest_undelivered_event_is_the_oldest_bundle_after_its_cursor(self):
		self.commit(("a1", A), at=self.now - timedelta(minutes=10))
		self.commit(("b1", B), at=self.now - timedelta(minutes=5))
		self.assertEqual(bundles.oldest_undelivered(frappe.db), self.now - timedelta(minutes=10))
		claimed = self.claim("d1")
		self.deliver([b for b in claimed if b.cursor == A])
		self.assertEqual(bundles.oldest_undelivered(frappe.db), self.now - timedelta(minutes=5))
		self.deliver(claimed)
		self.assertIsNone(bundles.oldest_undelivered(frappe.db))
