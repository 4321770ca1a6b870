# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

"""Backfills started from the desk (the Streaming Backfill list's "Start Backfill" dialog):
the same resumable job as `bench streaming backfill` (`operations.site.backfill`), run by
an RQ worker, with live progress and stop, resume and cancel. System Manager only."""

import frappe
from frappe import _
from frappe.model.document import Document

from erpnext_streaming.operations import jobs
from erpnext_streaming.operations.backfill import BackfillRefused

PROGRESS_EVENT = "streaming_backfill_progress"


class StreamingBackfill(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		checkpoint: DF.SmallText | None
		company: DF.Data | None
		emitted: DF.Int
		finished_at: DF.Datetime | None
		from_date: DF.Date | None
		kind: DF.Literal["Backfill", "Revaluation"]
		last_error: DF.SmallText | None
		name: DF.Int | None
		processed: DF.Int
		reference_doctype: DF.Link | None
		repost_item_valuation: DF.Data | None
		scope: DF.LongText | None
		skipped: DF.Int
		started_at: DF.Datetime | None
		status: DF.Literal["Queued", "Running", "Interrupted", "Failed", "Cancelled", "Completed"]
		to_date: DF.Date | None
		total: DF.Int
	# end: auto-generated types


def _scope(doctype: str, company: str | None, from_date: str | None, to_date: str | None) -> dict:
	getdate = frappe.utils.getdate
	return {
		"reference_doctype": doctype,
		"company": company or "",
		"from_date": getdate(from_date) if from_date else None,
		"to_date": getdate(to_date) if to_date else None,
	}


@frappe.whitelist(methods=["POST"])
def count(doctype: str, company: str | None = None, from_date: str | None = None, to_date: str | None = None):
	"""The dialog's dry run: submitted documents in scope (writes nothing); refuses what
	`bench streaming backfill --dry-run` refuses."""
	frappe.only_for("System Manager")
	from erpnext_streaming.operations import site

	scope = _scope(doctype, company, from_date, to_date)
	try:
		return site.backfill_scope_count(scope.pop("reference_doctype"), **scope)
	except BackfillRefused as e:
		frappe.throw(str(e), title=_("Cannot backfill"))


@frappe.whitelist(methods=["POST"])
def start(doctype: str, company: str | None = None, from_date: str | None = None, to_date: str | None = None):
	"""The unfinished backfill of this scope (as the bench command resumes it) or a new one,
	run in the background. Returns its name."""
	count(doctype, company, from_date, to_date)
	scope = _scope(doctype, company, from_date, to_date)
	found = jobs.find_unfinished(frappe.db, jobs.Kind.BACKFILL, **scope)
	job = found[-1] if found else jobs.create(frappe.db, jobs.Kind.BACKFILL, frappe.utils.now_datetime(),
		frappe.session.user, **scope)  # fmt: skip
	return resume(job.name)


@frappe.whitelist(methods=["POST"])
def resume(name: int | str) -> int:
	"""Run an unfinished backfill (again) in the background."""
	frappe.only_for("System Manager")
	job = jobs.load(frappe.db, name)
	if job.kind != jobs.Kind.BACKFILL or job.status not in jobs.JobStatus.UNFINISHED:
		frappe.throw(_("Only an unfinished backfill can be resumed"))
	frappe.cache.delete_value(_stop_key(job.name))
	# no RQ deduplication: the run just stopped may still count as started for a moment;
	# two runs of one job cannot overlap anyway (jobs.run holds a lock per job)
	frappe.enqueue(run, queue="long", timeout=24 * 3600, enqueue_after_commit=True, name=job.name)
	return job.name


@frappe.whitelist(methods=["POST"])
def cancel(name: int | str) -> None:
	"""A running backfill stops after its current chunk and is Interrupted (Resume continues
	it from its checkpoint, as the bench command after Ctrl-C); any other unfinished one is
	Cancelled. What was written stays written."""
	frappe.only_for("System Manager")
	job = jobs.load(frappe.db, name)
	if job.status not in jobs.JobStatus.UNFINISHED:
		frappe.throw(_("This backfill is {0}").format(_(job.status)))
	if job.status == jobs.JobStatus.RUNNING:
		frappe.cache.set_value(_stop_key(job.name), 1, expires_in_sec=24 * 3600)
	else:
		_end(job, jobs.JobStatus.CANCELLED, "cancelled from the desk")


def _stop_key(name) -> str:
	return f"erpnext_streaming:backfill-stop:{name}"


def stop_requested(name) -> bool:
	"""Asked by the running job after each chunk: straight from Redis (`get_value` would keep
	its first answer in the process's local cache, frappe/utils/redis_wrapper.py)."""
	return bool(frappe.cache.exists(_stop_key(name)))


def _end(job: jobs.Job, status: str, reason: str) -> None:
	job.status, job.last_error = status, reason
	jobs.save(frappe.db, job, frappe.utils.now_datetime())


class _Progress:
	"""jobs.ProgressSink: the job's counters to the user who started it (realtime)."""

	def __init__(self, name: int):
		self.name, self.total = name, 0

	def update(self, done: int) -> None:
		frappe.publish_realtime(PROGRESS_EVENT, {"name": self.name, "processed": done, "total": self.total},
			user=frappe.session.user)  # fmt: skip


def run(name: int) -> None:
	"""The background job: `operations.site.backfill` of the job's scope, which resumes
	this job (the newest unfinished one of its scope) from its checkpoint."""
	from erpnext_streaming.operations import site

	job = jobs.load(frappe.db, name)
	if job.status not in jobs.JobStatus.UNFINISHED:
		return
	result, _resumed = site.backfill(
		job.reference_doctype, job.company, job.from_date, job.to_date,
		progress=_Progress(job.name), stop=lambda: stop_requested(job.name),
	)  # fmt: skip
	if result.outcome == jobs.Outcome.PAUSED:
		_end(result.job, jobs.JobStatus.INTERRUPTED, "stopped from the desk; Resume continues it")
		frappe.db.commit()  # the desk reloads on the realtime message: Interrupted must be visible
	frappe.publish_realtime(PROGRESS_EVENT, {"name": result.job.name, "status": result.job.status},
		user=frappe.session.user)  # fmt: skip
