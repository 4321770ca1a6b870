"""Backfill from the desk (the Streaming Backfill doctype's whitelisted methods) on a real
bench. scripts/desk-check drives the same methods through the browser. Never commits."""

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.erpnext_streaming.doctype.streaming_backfill import streaming_backfill as desk
from erpnext_streaming.operations import jobs


class TestDeskBackfill(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def job(self, status: str) -> jobs.Job:
		job = jobs.create(frappe.db, jobs.Kind.BACKFILL, now_datetime(), reference_doctype="Sales Invoice")
		job.status = status
		jobs.save(frappe.db, job, now_datetime())
		return job

	def test_the_dry_run_refuses_what_the_bench_command_refuses(self):
		with self.assertRaises(frappe.ValidationError) as refused:
			desk.count("ToDo")
		self.assertRegex(str(refused.exception), "ToDo does not stream|streaming is disabled")

	def test_a_waiting_backfill_is_cancelled_for_good(self):
		job = self.job(jobs.JobStatus.INTERRUPTED)
		desk.cancel(job.name)
		self.assertEqual(jobs.load(frappe.db, job.name).status, jobs.JobStatus.CANCELLED)
		with self.assertRaises(frappe.ValidationError):
			desk.resume(job.name)
		with self.assertRaises(frappe.ValidationError):
			desk.cancel(job.name)

	def test_a_running_backfill_is_asked_to_stop_after_its_chunk(self):
		job = self.job(jobs.JobStatus.RUNNING)
		self.assertFalse(desk.stop_requested(job.name))  # the job asks after every chunk
		desk.cancel(job.name)
		self.assertEqual(jobs.load(frappe.db, job.name).status, jobs.JobStatus.RUNNING)
		self.assertTrue(desk.stop_requested(job.name))
		frappe.cache.delete_value(desk._stop_key(job.name))
