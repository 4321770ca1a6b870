"""When a drainer job stops between batches, and who takes over (Frappe and RQ glue).

A drainer job is not a service: it shares RQ's workers with ERPNext's own long jobs, and
deploys stop those workers. So it stops at a batch boundary when
- its slice is over (`erpnext_streaming_drainer_slice_seconds`, 60 s by default, or
  `..._slice_batches`): it goes to the back of the queue, behind the jobs already waiting
  (Repost Item Valuation and the like), instead of holding a worker for long;
- its worker was asked to stop: RQ answers SIGTERM with a warm shutdown that waits for the
  running job (rq 1.15 `Worker.request_stop` stores `shutdown_requested_date` in the
  worker's hash), and a SIGTERM may reach the work horse itself (a process group stop);
- Streaming Settings were saved: the next job reads them and builds a new producer.

Whenever it stops with work left, or a commit's wake-up arrived while it was leaving (a
commit's own enqueue is skipped while this job still counts as started), it enqueues its
successor before the job ends. The two job ids alternate (`JOB_IDS`), so the successor is
never deduplicated against the job that enqueues it.
"""

from __future__ import annotations

import contextlib
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from erpnext_streaming.delivery.signals import KEY_PREFIX

REDIS_CHECK_SECONDS = 1.0
HAND_OVER_REASONS = frozenset(
	{
		"slice over",
		"max batches",
		"max runtime",
		"settings changed",
		"shutdown requested",
		"worker shutting down",
	}
)
NO_HAND_OVER_REASONS = frozenset({"another drainer is running", "streaming is disabled"})


def settings_key(site: str) -> str:
	return f"{KEY_PREFIX}|{site}|settings-version"


def settings_saved(redis_client: Any, site: str) -> None:
	"""Streaming Settings were saved: a running drainer stops at its next batch boundary."""
	redis_client.set(settings_key(site), uuid.uuid4().hex)


def settings_version(redis_client: Any, site: str) -> bytes | None:
	return redis_client.get(settings_key(site))


class StopSignals:
	"""`stop()`: why the drainer should stop at this batch boundary, or None.

	Redis is asked at most every `REDIS_CHECK_SECONDS`; a SIGTERM to this process is seen
	at once (`on_sigterm`)."""

	def __init__(
		self,
		redis_client: Any,
		site: str,
		worker_key: str | None,
		clock: Callable[[], float] = time.monotonic,
	):
		self.redis, self.site, self.worker_key, self.clock = redis_client, site, worker_key, clock
		self.version = settings_version(redis_client, site)
		self.terminated = False
		self._checked_at = clock()

	def __call__(self) -> str | None:
		if self.terminated:
			return "shutdown requested"
		now = self.clock()
		if now - self._checked_at < REDIS_CHECK_SECONDS:
			return None
		self._checked_at = now
		if self.worker_key and self.redis.hget(self.worker_key, "shutdown_requested_date"):
			return "worker shutting down"
		if settings_version(self.redis, self.site) != self.version:
			return "settings changed"
		return None

	@contextlib.contextmanager
	def on_sigterm(self) -> Iterator[None]:
		"""Within: SIGTERM marks the drainer to stop at its next batch boundary (RQ's work
		horse leaves SIGTERM at its default, which would kill the batch in flight)."""

		def stop(signum, frame):
			self.terminated = True

		try:
			previous = signal.signal(signal.SIGTERM, stop)
		except ValueError:  # not the main thread: nothing to install
			yield
			return
		try:
			yield
		finally:
			signal.signal(signal.SIGTERM, previous)


def needs_successor(exit_reason: str, work_left: Callable[[], bool]) -> bool:
	"""Should the job that ends with `exit_reason` enqueue the next drainer?"""
	if exit_reason in NO_HAND_OVER_REASONS:
		return False
	return exit_reason in HAND_OVER_REASONS or work_left()
