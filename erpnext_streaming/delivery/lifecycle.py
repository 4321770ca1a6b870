"""When a drainer job stops between batches, and who takes over (Frappe and RQ glue;
docs/operations.md, "Sizing workers").

A drainer shares RQ's workers with ERPNext's long jobs and deploys stop those workers, so it
stops at a batch boundary when its slice is over, when its worker was asked to stop (rq 1.15
`Worker.request_stop` stores `shutdown_requested_date` in the worker's hash; a SIGTERM may
also reach the work horse), or when Streaming Settings were saved. With work left it enqueues
its successor under the other of the two `JOB_IDS`, so RQ's deduplication never drops it.
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

	def on_sigterm(self) -> contextlib.AbstractContextManager:
		"""Within: SIGTERM marks the drainer to stop at its next batch boundary (RQ's work
		horse leaves SIGTERM at its default, which would kill the batch in flight)."""
		return handling_sigterm(lambda signum, frame: setattr(self, "terminated", True))


@contextlib.contextmanager
def handling_sigterm(handler: Callable[[int, Any], None]) -> Iterator[None]:
	"""Within: `handler` answers SIGTERM (off the main thread, where Python cannot install a
	signal handler, nothing changes)."""
	try:
		previous = signal.signal(signal.SIGTERM, handler)
	except ValueError:
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
