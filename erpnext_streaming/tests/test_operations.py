"""The operations layer on a real bench: status and health, backfill of real Sales Invoices,
replay and requeue (twins of tests/test_operations_status.py,
tests/test_operations_backfill.py and tests/test_operations_replay_requeue.py).

Code that commits per chunk runs under `commits_as_savepoints`, so every test stays in
its own transaction and tearDown rolls it back."""

from datetime import timedelta

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime, nowdate

from erpnext_streaming import api, catalog
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE, Status
from erpnext_streaming.delivery import bundles
from erpnext_streaming.emitters import handler
from erpnext_streaming.emitters.envelope import event_id
from erpnext_streaming.operations import jobs, status
from erpnext_streaming.operations import site as ops
from erpnext_streaming.outbox.records import Published, decode_payload
from erpnext_streaming.outbox.write import write
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.delivery_records import (
	bundle_of,
	bundle_rows,
	clear_delivery_tables,
	outbox_record,
)
from erpnext_streaming.tests.utils import FailingDatabase, commits_as_savepoints, decode, enable_streaming

COMPANY = "_ES Ops Co"


def log_rows(now, **states):
	"""One Event Log row per label in `states` ({label: (status, age)}), each committed by
	its own transaction `age` ago (so its delivery bundle is that old too), in the order
	given; returns {label: name}."""
	names = {}
	for label, (state, age) in states.items():
		write(frappe.db, [outbox_record(label, COMPANY, prefix="ops-test")], now - age)
		name = frappe.db.get_value(EVENT_LOG_DOCTYPE, {"event_id": f"ops-test-{label}"})
		names[label] = name
		frappe.db.set_value(
			EVENT_LOG_DOCTYPE,
			name,
			{
				"status": state,
				"sent_at": now - age if state == Status.SENT else None,
				"last_error": f"error of {label}" if state in Status.REQUEUEABLE else "",
			},
			update_modified=False,
		)
	return names


def delivered_through(name, now):
	"""The drainer delivered COMPANY's bundles up to the one holding Event Log row `name`
	and settled: its cursor moved past them and they are deleted (no receipt: the rows'
	states are the fixture's)."""
	bundles.record_delivered(frappe.db, [], {COMPANY: bundle_of(name)}, now)
	bundles.settle(frappe.db, now)


class TestStatusAndHealth(FrappeTestCase):
	def setUp(self):
		enable_streaming()  # health is "disabled" otherwise, whatever the Event Log holds
		clear_delivery_tables()
		self.now = now_datetime()
		self.names = log_rows(
			self.now,
			dead=(Status.DEAD, timedelta(hours=1)),
			sent=(Status.SENT, timedelta(minutes=30)),
			queued=(Status.QUEUED, timedelta(minutes=12)),
			failed=(Status.FAILED, timedelta(minutes=4)),
		)
		# the drainer is done with the Dead and Sent events; the Queued and Failed ones wait
		delivered_through(self.names["sent"], self.now)

	def tearDown(self):
		frappe.db.rollback()

	def test_collect_counts_ages_last_sent_and_topics(self):
		report = status.collect(frappe.db, self.now)
		self.assertEqual(report.counts, {"Queued": 1, "Sent": 1, "Failed": 1, "Dead": 1})
		self.assertEqual(report.age(Status.QUEUED), 12 * 60)
		self.assertEqual(report.age(Status.FAILED), 4 * 60)
		self.assertEqual(report.lag_seconds, 12 * 60)
		self.assertEqual(report.last_sent_at, self.now - timedelta(minutes=30))
		self.assertEqual(
			report.per_topic, [("erpnext.gl-entry", {"Queued": 1, "Sent": 1, "Failed": 1, "Dead": 1})]
		)
		self.assertIn(report.last_error["event_log"], (self.names["failed"], self.names["dead"]))

	def test_oldest_queued_is_the_oldest_event_not_delivered_yet(self):
		"""A delivered event reads Queued in the Event Log until its receipt is settled, but it
		no longer waits: the oldest Queued age is that of the oldest undelivered bundle."""
		queued = self.names["queued"]
		bundles.record_delivered(
			frappe.db, [Published(queued, 0, 1)], {COMPANY: bundle_of(queued)}, self.now
		)  # the drainer's receipt, not settled yet
		report = status.collect(frappe.db, self.now)
		self.assertEqual(report.counts[Status.QUEUED], 1)
		self.assertEqual(report.age(Status.QUEUED), 4 * 60)  # the Failed event's bundle
		bundles.settle(frappe.db, self.now)
		report = status.collect(frappe.db, self.now)
		self.assertEqual((report.counts[Status.QUEUED], report.counts[Status.SENT]), (0, 2))
		self.assertEqual(report.age(Status.QUEUED), 4 * 60)
		delivered_through(self.names["failed"], self.now)
		report = status.collect(frappe.db, self.now)
		self.assertIsNone(report.age(Status.QUEUED))
		self.assertEqual(report.lag_seconds, 4 * 60)  # the Failed row itself still waits

	def test_health_api_payload(self):
		payload = api.health(check_broker=0)
		self.assertEqual(payload["status"], "degraded")
		self.assertFalse(payload["healthy"])
		self.assertEqual(payload["counts"], {"Queued": 1, "Failed": 1, "Dead": 1})  # no Sent: cheap
		self.assertGreaterEqual(payload["lag_seconds"], 12 * 60)
		self.assertEqual(payload["dead_letters"]["waiting"], 1)
		self.assertIn("running", payload["drainer"])
		self.assertIsNone(payload["broker"])
		frappe.as_json(payload)  # plain JSON

	def test_status_text_and_the_workspace_methods(self):
		text, health = ops.status_text(check_broker=False)
		self.assertEqual(health, "degraded")
		self.assertIn("  Queued             1", text)
		self.assertIn("  oldest Queued:  12m 00s", text)
		# older than the health check's maximum lag (300 s): red
		self.assertEqual(api.oldest_pending_age(), '<span style="color: var(--red-600)">12m 00s</span>')
		chart = api.events_per_minute(chart_name="Streaming Events per Minute")
		self.assertEqual([d["name"] for d in chart["datasets"]], list(Status.ALL))
		self.assertEqual(len(chart["labels"]), 60)


class TestBackfill(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		erpnext_records.ensure()  # our company, fiscal year, warehouse, customer and item

	def setUp(self):
		enable_streaming()
		handler.clear()

	def tearDown(self):
		handler.clear()
		frappe.db.rollback()
		catalog.clear_cache()

	def make_invoices(self, count):
		invoices = [erpnext_records.sales_invoice(qty=1 + i, rate=100 + i) for i in range(count)]
		handler.clear()  # forget the live events: the backfill must produce its own
		return invoices

	def backfilled(self):
		return frappe.get_all(
			EVENT_LOG_DOCTYPE,
			filters={"reference_doctype": "Sales Invoice", "event_type": "submitted"},
			fields=["name", "event_id", "reference_name", "status", "payload"],
			order_by="name asc",
		)

	def test_real_invoices_are_backfilled_with_their_live_event_ids_and_a_rerun_adds_none(self):
		clear_delivery_tables()
		invoices = self.make_invoices(3)
		with commits_as_savepoints():
			result, resumed = ops.backfill(
				"Sales Invoice",
				company=erpnext_records.COMPANY,
				from_date=frappe.utils.getdate(nowdate()),
				chunk_size=2,
			)
		self.assertEqual(result.outcome, jobs.Outcome.COMPLETED, result.error)
		self.assertFalse(resumed)
		rows = {r.reference_name: r for r in self.backfilled()}
		for invoice in invoices:
			row = rows[invoice.name]
			self.assertEqual(row.status, "Queued")
			modified, *state = frappe.db.get_value(
				"Sales Invoice", invoice.name, ["modified", "status", "outstanding_amount"]
			)
			self.assertEqual(
				row.event_id, event_id("Sales Invoice", invoice.name, "submitted", modified, state)
			)
			record = decode(decode_payload(row.payload), get_event_schema("Sales Invoice"))
			self.assertEqual(record["document"]["grand_total"], invoice.grand_total)
			self.assertEqual(len(record["document"]["items"]), len(invoice.items))
		self.assertEqual(len({r.event_id for r in rows.values()}), len(rows))
		with commits_as_savepoints():
			again, _ = ops.backfill(
				"Sales Invoice", company=erpnext_records.COMPANY, from_date=frappe.utils.getdate(nowdate())
			)
		self.assertEqual(again.job.emitted, 0)
		self.assertEqual(again.job.skipped, again.job.processed)
		self.assertEqual(len(self.backfilled()), len(rows))

	def test_an_interrupted_backfill_resumes_without_duplicates(self):
		clear_delivery_tables()
		invoices = self.make_invoices(5)
		scope = {"company": erpnext_records.COMPANY, "from_date": frappe.utils.getdate(nowdate())}
		with commits_as_savepoints():
			# commits: 1 the job, 2 Running, 2 + k chunk k; the 2nd chunk is interrupted
			first, _ = ops.backfill(
				"Sales Invoice", chunk_size=2, db=FailingDatabase(frappe.db, 4, KeyboardInterrupt()), **scope
			)
			self.assertEqual(first.outcome, jobs.Outcome.INTERRUPTED)
			self.assertEqual(jobs.load(frappe.db, first.job.name).processed, 2)
			second, resumed = ops.backfill("Sales Invoice", chunk_size=2, **scope)
		self.assertTrue(resumed)
		self.assertEqual(second.outcome, jobs.Outcome.COMPLETED, second.error)
		rows = self.backfilled()
		self.assertEqual(len(rows), len({r.event_id for r in rows}))
		self.assertLessEqual({i.name for i in invoices}, {r.reference_name for r in rows})

	def test_a_doctype_the_catalog_does_not_stream_is_refused(self):
		from erpnext_streaming.operations.backfill import BackfillRefused

		with self.assertRaises(BackfillRefused):
			ops.backfill("ToDo")


class TestReplayAndRequeue(FrappeTestCase):
	def setUp(self):
		clear_delivery_tables()
		self.now = now_datetime()
		self.names = log_rows(
			self.now,
			sent1=(Status.SENT, timedelta(hours=2)),
			sent2=(Status.SENT, timedelta(hours=1)),
			dead=(Status.DEAD, timedelta(minutes=5)),
			failed=(Status.FAILED, timedelta(minutes=5)),
		)
		delivered_through(self.names["dead"], self.now)  # the Failed event's bundle waits

	def tearDown(self):
		frappe.db.rollback()

	def rows(self):
		return frappe.get_all(
			EVENT_LOG_DOCTYPE,
			fields=["name", "event_id", "status", "reference_name", "company_sequence", "payload"],
			order_by="name asc",
		)

	def test_replay_queues_copies_with_the_same_ids(self):
		before = self.rows()
		with commits_as_savepoints():
			result = ops.replay(self.now - timedelta(hours=3), self.now)
		self.assertEqual(result.queued, 2)
		after = self.rows()
		copies = after[len(before) :]
		originals = {r.reference_name: r for r in before}
		self.assertEqual([c.reference_name for c in copies], ["sent1", "sent2"])
		for copy in copies:
			self.assertEqual(copy.status, "Queued")
			self.assertEqual(copy.event_id, originals[copy.reference_name].event_id)
			self.assertEqual(copy.payload, originals[copy.reference_name].payload)
		self.assertEqual([c.company_sequence for c in copies], [5, 6])
		# the copies are queued for delivery behind the company's waiting events
		queued = [b["refs"] for b in bundle_rows()]
		self.assertEqual(queued, [[self.names["failed"]], [c.name for c in copies]])
		self.assertEqual(bundle_rows()[-1]["ready"][0].headers["ce_source"], frappe.local.site)

	def test_requeue_with_status_and_since(self):
		with commits_as_savepoints():
			self.assertEqual(
				ops.requeue(["Dead"], dry_run=True), {"matched": 1, "requeued": 0, "dry_run": True}
			)
			self.assertEqual(ops.requeue(["Dead"], since=self.now - timedelta(days=1))["requeued"], 1)
			self.assertEqual(ops.requeue(["Failed"], since=self.now + timedelta(days=1))["requeued"], 0)
		statuses = {r.reference_name: r.status for r in self.rows()}
		self.assertEqual(statuses["dead"], "Queued")
		self.assertEqual(statuses["failed"], "Failed")
		# the requeued Dead event is queued again at the end of its company's queue
		queued = [b["refs"] for b in bundle_rows()]
		self.assertEqual(queued, [[self.names["failed"]], [self.names["dead"]]])

	def test_requeue_walks_every_matching_row_in_chunks(self):
		with commits_as_savepoints():
			self.assertEqual(
				ops.requeue(chunk=1, company=self.rows()[0].company),
				{"matched": 2, "requeued": 2, "dry_run": False},
			)
		statuses = {r.reference_name: r.status for r in self.rows()}
		self.assertEqual((statuses["dead"], statuses["failed"]), ("Queued", "Queued"))

	def test_a_capture_failure_is_not_requeued(self):
		import dataclasses

		record = dataclasses.replace(
			outbox_record("broken", COMPANY, status=Status.DEAD, prefix="ops-test"), payload=b""
		)
		write(frappe.db, [record], self.now)
		broken = frappe.db.get_value(EVENT_LOG_DOCTYPE, {"event_id": "ops-test-broken"})
		with commits_as_savepoints():
			self.assertEqual(ops.requeue(["Dead"])["requeued"], 1)  # "dead", not "broken"
		self.assertEqual(frappe.db.get_value(EVENT_LOG_DOCTYPE, broken, "status"), "Dead")
		with self.assertRaises(frappe.ValidationError):
			api.requeue(names=[broken])
