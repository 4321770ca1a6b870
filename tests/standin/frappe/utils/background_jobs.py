"""STAND-IN for frappe.utils.background_jobs (NOT Frappe): real RQ on real Redis.

Queue names, job ids and `execute_job`'s commit/rollback follow Frappe v15
(frappe/utils/background_jobs.py). The worker is a plain forking `rq worker` process
with this stand-in on PYTHONPATH.
"""

from __future__ import annotations

import os
from uuid import uuid4

import redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

import frappe

QUEUE_TIMEOUTS = {"short": 300, "default": 300, "long": 1500}
BENCH_ID = os.environ.get("ES_STANDIN_BENCH_ID", "standin-bench")


def get_redis_conn() -> redis.Redis:
	return redis.Redis.from_url(frappe.local.conf.redis_queue or frappe.local.conf.redis_url)


def generate_qname(qtype: str) -> str:
	return f"{BENCH_ID}:{qtype}"


def get_queue(qtype: str, is_async: bool = True) -> Queue:
	if qtype not in QUEUE_TIMEOUTS:
		frappe.throw(f"Queue should be one of {', '.join(QUEUE_TIMEOUTS)}")
	return Queue(generate_qname(qtype), connection=get_redis_conn(), is_async=is_async)


def get_queues_timeout() -> dict[str, int]:
	return dict(QUEUE_TIMEOUTS)


def create_job_id(job_id: str | None) -> str:
	return f"{frappe.local.site}::{job_id or uuid4()}"


def get_job(job_id: str) -> Job | None:
	try:
		return Job.fetch(create_job_id(job_id), connection=get_redis_conn())
	except NoSuchJobError:
		return None


def is_job_enqueued(job_id: str) -> bool:
	job = get_job(job_id)
	return bool(job and job.get_status() in (JobStatus.QUEUED, JobStatus.STARTED))


def enqueue(
	method,
	queue="default",
	timeout=None,
	is_async=True,
	job_name=None,
	now=False,
	enqueue_after_commit=False,
	at_front=False,
	job_id=None,
	deduplicate=False,
	**kwargs,
):
	if deduplicate:
		if not job_id:
			frappe.throw("`job_id` paramater is required for deduplication.")
		job = get_job(job_id)
		if job and job.get_status() in (JobStatus.QUEUED, JobStatus.STARTED):
			return None
		elif job:
			job.delete()
	from frappe import standin

	job_id = create_job_id(job_id)
	if now:
		return frappe.get_attr(method)(**kwargs) if isinstance(method, str) else method(**kwargs)
	q = get_queue(queue, is_async=is_async)
	queue_args = {
		"site": frappe.local.site,
		"method": method,
		"job_name": job_name or str(method),
		"kwargs": kwargs,
		"standin": {
			"db_params": frappe.local.conf.db_params,
			"redis_url": frappe.local.conf.redis_url,
			"conf": {k: v for k, v in frappe.local.conf.items() if k not in ("db_params", "redis_url")},
			# the worker process has no registered Singles: carry the test's values along
			"singles": standin.registered_singles(),
		},
	}

	def enqueue_call():
		return q.enqueue_call(
			"frappe.utils.background_jobs.execute_job",
			timeout=timeout or QUEUE_TIMEOUTS[queue],
			kwargs=queue_args,
			at_front=at_front,
			job_id=job_id,
		)

	if enqueue_after_commit:
		frappe.db.after_commit.add(enqueue_call)
		return None
	return enqueue_call()


def execute_job(site, method, job_name, kwargs, standin, user=None):
	"""frappe.utils.background_jobs.execute_job: init, call, commit on success, rollback on error."""
	from frappe import standin as setup

	setup.init_site(site, standin["db_params"], standin["redis_url"], standin.get("conf"))
	for doctype, values in (standin.get("singles") or {}).items():
		setup.set_single(doctype, values, shared=False)  # the site's Redis has the latest
	fn = frappe.get_attr(method) if isinstance(method, str) else method
	try:
		result = fn(**kwargs)
	except Exception:
		frappe.db.rollback()
		frappe.log_error(title=str(method))
		raise
	else:
		frappe.db.commit()
		return result
	finally:
		setup.destroy()
