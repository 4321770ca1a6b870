"""The transactional outbox write on a real bench (twin of tests/test_outbox_write.py): the
Event Log rows of a transaction and its delivery bundles, one per company, holding the
events as messages ready to produce.

Never commits: every test runs in the test transaction and rolls back. The Event Log and
the delivery queue are emptied inside that transaction, so what a test reads is its own.
"""

from datetime import datetime
from zoneinfo import ZoneInfo

import frappe
import pymysql
from frappe.tests.utils import FrappeTestCase
from frappe.utils import get_system_timezone, now_datetime

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, Status
from erpnext_streaming.emitters import handler
from erpnext_streaming.outbox.records import NO_COMPANY_BUCKET, decode_payload
from erpnext_streaming.outbox.write import write as write_outbox
from erpnext_streaming.tests.delivery_records import (
	NoRegistry,
	bundle_rows,
	clear_delivery_tables,
	outbox_record,
	read_bundle,
)

A, B = "_ES Test A", "_ES Test B"
EVENT_TIME = datetime(2026, 11, 23, 9, 30)


def record(ref, company, status=Status.QUEUED):
	return outbox_record(ref, company, status, event_time=EVENT_TIME)


class TestOutboxWrite(FrappeTestCase):
	def setUp(self):
		clear_delivery_tables()
		frappe.db.delete("Streaming Company Sequence", {"name": ("in", [A, B, "-"])})
		self.now = now_datetime()

	def tearDown(self):
		frappe.db.rollback()

	def write(self, *records):
		"""One transaction's flush, with the site's message context (as the handler writes)."""
		write_outbox(frappe.db, list(records), self.now, context=handler.message_context())

	def rows(self):
		return frappe.get_all(
			EVENT_LOG_DOCTYPE,
			fields=["name", "reference_name", "company", "company_sequence", "status", "payload"],
			order_by="name asc",
		)

	def test_a_transaction_writes_its_events_in_buffer_order_with_gapless_company_sequences(self):
		self.write(record("a1", A), record("b1", B), record("a2", A), record("x1", ""))
		self.write(record("a3", A), record("b2", B))
		got = self.rows()
		self.assertEqual(
			[(r.reference_name, r.company, r.company_sequence, r.status) for r in got],
			[
				("a1", A, 1, Status.QUEUED),
				("b1", B, 1, Status.QUEUED),
				("a2", A, 2, Status.QUEUED),
				("x1", "", 1, Status.QUEUED),
				("a3", A, 3, Status.QUEUED),
				("b2", B, 2, Status.QUEUED),
			],
		)
		self.assertEqual(decode_payload(got[0].payload), b"\x01")

	def test_a_transaction_writes_one_bundle_per_company_with_its_events_in_sequence_order(self):
		self.write(record("a1", A), record("b1", B), record("x1", A, Status.DEAD), record("a2", A))
		self.write(record("a3", A), record("n1", ""))
		name = {r.reference_name: r.name for r in self.rows()}
		got = [(b["company"], b["events"], b["refs"]) for b in bundle_rows()]
		self.assertEqual(
			got,
			[
				(A, 2, [name["a1"], name["a2"]]),  # the Dead capture failure is not queued
				(B, 1, [name["b1"]]),
				(A, 1, [name["a3"]]),
				(NO_COMPANY_BUCKET, 1, [name["n1"]]),
			],
		)

	def test_a_bundle_holds_the_message_ready_to_produce_with_the_sites_source_and_time_zone(self):
		self.write(record("a1", A))
		(row,) = self.rows()
		framer = NoRegistry()
		((message,), failed) = read_bundle(bundle_rows()[0]["messages"], framer)
		self.assertEqual(failed, {})
		self.assertEqual(
			(message.ref, message.topic, message.key, message.value),
			(row.name, "erpnext.gl-entry", A, decode_payload(row.payload)),
		)
		self.assertEqual(message.value, b"\x01")
		self.assertEqual(framer.asked, [])  # schemaless: no registry framing left to the drainer
		headers = message.headers
		offset = ZoneInfo(get_system_timezone()).utcoffset(EVENT_TIME)
		self.assertEqual(
			list(headers.items()),  # in the order of messages.headers
			[
				("ce_id", "delivery-test-a1"),
				("ce_type", "io.erpnext.streaming.gl-entry.posted"),
				("ce_source", frappe.local.site),
				("ce_subject", "GL Entry/a1"),
				(
					"ce_time",
					datetime(2026, 11, 23, 9, 30, tzinfo=ZoneInfo(get_system_timezone())).isoformat(),
				),
				("ce_specversion", "1.0"),
				("content-type", "application/avro"),
				("schema_name", "io.erpnext.streaming.GLEntryEvent"),
				("schema_version", "1"),
				("schema_fingerprint", "00"),
				("es_company_sequence", "1"),
			],
		)
		self.assertTrue(headers["ce_time"].startswith("2026-11-23T09:30:00"))
		self.assertEqual(datetime.fromisoformat(headers["ce_time"]).utcoffset(), offset)

	def test_a_bundles_values_come_back_from_the_database_byte_for_byte_whatever_their_bytes(self):
		"""The values line stores one character per byte in the Long Text column (utf8mb4):
		every byte value, NUL, newlines, quotes and backslashes included, survives the
		INSERT through frappe.db and the read back."""
		every = record("a1", A)
		every.payload = bytes(range(256)) + b"'\"\\\n\x00"
		self.write(every, record("a2", A))
		(stored,) = bundle_rows()
		ready, failed = read_bundle(stored["messages"])
		self.assertEqual(failed, {})
		self.assertEqual([m.value for m in ready], [every.payload, b"\x01"])

	def test_an_event_without_event_time_is_stamped_with_its_creation_in_the_sites_time_zone(self):
		write_outbox(frappe.db, [outbox_record("a1", A)], self.now, context=handler.message_context())
		((message,), _) = read_bundle(bundle_rows()[0]["messages"])
		self.assertEqual(
			message.headers["ce_time"], self.now.replace(tzinfo=ZoneInfo(get_system_timezone())).isoformat()
		)

	def test_a_failed_insert_gives_its_sequence_numbers_back_and_leaves_no_bundle(self):
		self.write(record("a1", A))
		broken = record("a2", A)
		broken.event_type = "x" * 200  # longer than varchar(140): MariaDB refuses the row (strict mode)
		with self.assertRaises(pymysql.err.DataError):
			self.write(broken)
		self.write(record("a3", A))  # the same transaction goes on
		rows = self.rows()
		self.assertEqual([(r.reference_name, r.company_sequence) for r in rows], [("a1", 1), ("a3", 2)])
		self.assertEqual([b["refs"] for b in bundle_rows()], [[r.name] for r in rows])

	def test_companies_the_database_holds_as_one_name_share_one_gapless_sequence(self):
		self.write(record("a1", A), record("a2", "_es test a "), record("a3", A))
		self.write(record("a4", "_ES TEST A"))
		self.assertEqual(
			[(r.reference_name, r.company, r.company_sequence) for r in self.rows()],
			[("a1", A, 1), ("a2", "_es test a ", 2), ("a3", A, 3), ("a4", "_ES TEST A", 4)],
		)
		# one bundle per transaction: the database holds the spellings as one company
		self.assertEqual([b["events"] for b in bundle_rows()], [3, 1])
