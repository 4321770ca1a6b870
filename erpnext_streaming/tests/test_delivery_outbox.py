"""The outbox on a real bench: the transactional write and the drainer's claim, lease and
mark rules (twins of tests/test_outbox_write.py and tests/test_delivery_claim.py).

Never commits: every test runs in the test transaction and rolls back. Rows already in
the site's Event Log are deleted inside that transaction, so claims see only ours.
"""

from datetime import timedelta

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming import outbox
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, Status
from erpnext_streaming.outbox import Lease, Published, Unsent
from erpnext_streaming.tests.delivery_records import outbox_record

LEASE = timedelta(seconds=120)


record = outbox_record


class TestDeliveryOutbox(FrappeTestCase):
	def setUp(self):
		frappe.db.delete(EVENT_LOG_DOCTYPE)
		frappe.db.delete("Streaming Company Sequence", {"name": ("in", ["_ES Test A", "_ES Test B"])})
		self.now = now_datetime()

	def tearDown(self):
		frappe.db.rollback()

	def write(self, *refs):
		outbox.write(frappe.db, [record(ref, company) for ref, company in refs], self.now)
		return self.names(*[ref for ref, _ in refs])

	def names(self, *refs):
		return frappe.get_all(
			EVENT_LOG_DOCTYPE, filters={"reference_name": ("in", refs)}, pluck="name", order_by="name asc"
		)

	def written(self, *fields):
		"""`fields` of the rows these tests wrote, in name order, as tuples."""
		rows = frappe.get_all(
			EVENT_LOG_DOCTYPE,
			fields=list(fields),
			filters={"event_id": ("like", "delivery-test-%")},
			order_by="name asc",
		)
		return [tuple(r[f] for f in fields) for r in rows]

	def claim(self, owner, now=None, limit=100):
		now = now or self.now
		return [r["reference_name"] for r in outbox.claim(frappe.db, Lease(owner, now + LEASE), now, limit)]

	def test_write_keeps_buffer_order_and_gapless_company_sequences(self):
		self.write(("a1", "_ES Test A"), ("b1", "_ES Test B"), ("a2", "_ES Test A"))
		self.assertEqual(
			self.written("reference_name", "company_sequence", "status"),
			[("a1", 1, Status.QUEUED), ("b1", 1, Status.QUEUED), ("a2", 2, Status.QUEUED)],
		)

	def test_a_claim_leases_only_the_first_row_of_each_companys_prefix(self):
		self.write(("a1", "_ES Test A"), ("b1", "_ES Test B"), ("a2", "_ES Test A"), ("a3", "_ES Test A"))
		self.assertEqual(self.claim("d1"), ["a1", "b1", "a2", "a3"])
		self.assertEqual(
			self.written("reference_name", "lease_owner"),
			[("a1", "d1"), ("b1", "d1"), ("a2", None), ("a3", None)],
		)
		self.assertEqual(self.claim("d2"), [])  # the leased first rows hold both prefixes

	def test_a_drainer_knows_which_companies_it_still_leases(self):
		a1, b1 = self.write(("a1", "_ES Test A"), ("b1", "_ES Test B"))
		claimed = outbox.claim(frappe.db, Lease("d1", self.now + LEASE), self.now, 10)
		leases = outbox.lease_holders(claimed)
		self.assertEqual(leases, {"_ES Test A": a1, "_ES Test B": b1})
		frappe.db.set_value(EVENT_LOG_DOCTYPE, b1, "lease_owner", "d2", update_modified=False)
		self.assertEqual(outbox.still_leased(frappe.db, "d1", leases), {"_ES Test A"})

	def test_a_company_is_leased_to_one_drainer_at_a_time(self):
		self.write(("a1", "_ES Test A"), ("a2", "_ES Test A"))
		self.assertEqual(self.claim("d1"), ["a1", "a2"])
		self.write(("a3", "_ES Test A"), ("b1", "_ES Test B"))
		self.assertEqual(self.claim("d2"), ["b1"])
		outbox.mark_sent(
			frappe.db, [Published(n, 0, i) for i, n in enumerate(self.names("a1", "a2", "b1"))], self.now
		)
		self.assertEqual(self.claim("d2"), ["a3"])

	def test_a_failed_row_holds_back_its_company_until_due(self):
		a1, a2 = self.write(("a1", "_ES Test A"), ("a2", "_ES Test A"))
		self.claim("d1")
		due = self.now + timedelta(seconds=30)
		outbox.mark_unsent(
			frappe.db, "d1", [Unsent(a1, Status.FAILED, 1, "timeout", next_attempt_at=due)], self.now
		)
		outbox.release_leases(frappe.db, "d1", [a2])
		self.write(("b1", "_ES Test B"))
		self.assertEqual(self.claim("d1"), ["b1"])
		self.assertEqual(self.claim("d2", now=due + timedelta(seconds=1)), ["a1", "a2"])
		self.assertEqual(frappe.db.get_value(EVENT_LOG_DOCTYPE, a1, "attempts"), 1)

	def test_an_expired_lease_is_taken_over_and_released(self):
		(a1,) = self.write(("a1", "_ES Test A"))
		self.claim("dead-drainer")
		after = self.now + LEASE + timedelta(seconds=1)
		self.assertEqual(outbox.release_expired_leases(frappe.db, after), [a1])
		self.assertIsNone(frappe.db.get_value(EVENT_LOG_DOCTYPE, a1, "lease_owner"))
		self.assertEqual(self.claim("d2", now=after), ["a1"])

	def test_sent_rows_record_partition_and_offset_and_are_never_failed_again(self):
		a1, b1 = self.write(("a1", "_ES Test A"), ("b1", "_ES Test B"))
		self.claim("d1")
		outbox.mark_sent(frappe.db, [Published(a1, 2, 40), Published(b1, 5, 7)], self.now)
		outbox.mark_unsent(frappe.db, "d1", [Unsent(a1, Status.FAILED, 1, "late")], self.now)
		row = frappe.db.get_value(
			EVENT_LOG_DOCTYPE, a1, ["status", "kafka_partition", "kafka_offset", "lease_owner"], as_dict=True
		)
		self.assertEqual(
			(row.status, row.kafka_partition, row.kafka_offset, row.lease_owner), (Status.SENT, 2, 40, None)
		)

	def test_capture_dead_rows_wait_for_their_dead_letter_copy(self):
		outbox.write(
			frappe.db, [record("ok", "_ES Test A"), record("broken", "_ES Test A", Status.DEAD)], self.now
		)
		ok, broken = self.names("ok", "broken")
		self.assertEqual(self.claim("d1"), ["ok"])
		dead = outbox.claim_dead_letters(frappe.db, Lease("d1", self.now + LEASE), self.now, 10)
		self.assertEqual([r["name"] for r in dead], [broken])
		outbox.mark_dead_lettered(frappe.db, [Published(broken, 0, 3)], self.now)
		outbox.mark_sent(frappe.db, [Published(ok, 0, 0)], self.now)
		self.assertFalse(outbox.has_pending_work(frappe.db, self.now))

	def test_claimed_rows_carry_every_delivery_column_as_stored(self):
		a1, x1 = self.write(("a1", "_ES Test A"), ("x1", ""))
		error = "first line\x1fsecond\x1f part, ünïcode"
		frappe.db.sql(
			"UPDATE `tabStreaming Event Log` SET status = 'Failed', attempts = 2, last_error = %s, "
			"event_time = NULL, message_key = NULL WHERE name = %s",
			(error, x1),
		)
		columns = ", ".join(f"`{c}`" for c in outbox.DELIVERY_COLUMNS)
		stored = {
			r["name"]: r
			for r in frappe.db.sql(
				f"SELECT {columns} FROM `tabStreaming Event Log` WHERE name IN (%s, %s)",
				(a1, x1),
				as_dict=True,
			)
		}
		claimed = outbox.claim(frappe.db, Lease("d1", self.now + LEASE), self.now, 10)
		self.assertEqual(sorted(r["name"] for r in claimed), sorted([a1, x1]))
		for row in claimed:
			self.assertEqual(row, dict(stored[row["name"]]))
		self.assertEqual(next(r for r in claimed if r["name"] == x1)["last_error"], error)

	def test_a_claimer_continues_a_company_after_its_own_rows_in_flight(self):
		self.write(("a1", "_ES Test A"), ("b1", "_ES Test B"), ("a2", "_ES Test A"), ("b2", "_ES Test B"))
		first = outbox.claim(frappe.db, Lease("d1", self.now + LEASE), self.now, 2)
		self.assertEqual([r["reference_name"] for r in first], ["a1", "b1"])
		self.assertEqual(self.claim("d2"), [])
		after = {r["company"]: r["name"] for r in first}
		rows = outbox.claim(frappe.db, Lease("d1", self.now + LEASE), self.now, 10, after=after)
		self.assertEqual([r["reference_name"] for r in rows], ["a2", "b2"])

	def test_companies_the_database_holds_as_one_name_share_one_gapless_sequence(self):
		self.write(("a1", "_ES Test A"), ("a2", "_es test a "), ("a3", "_ES Test A"))
		self.assertEqual(
			self.written("reference_name", "company", "company_sequence"),
			[("a1", "_ES Test A", 1), ("a2", "_es test a ", 2), ("a3", "_ES Test A", 3)],
		)
