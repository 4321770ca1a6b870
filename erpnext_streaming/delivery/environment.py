"""What a drainer is given and what it reports: its configuration, its clock, its owner
name and its statistics (docs/architecture.md, "Delivery").
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from erpnext_streaming import constants as c


class SystemClock:
	def __init__(self, now: Callable[[], datetime] = datetime.now):
		self._now = now

	def now(self) -> datetime:
		"""Naive local time, like frappe.utils.now_datetime: for the columns people read
		(`modified`, `sent_at`, `dead_lettered_at`). Never for a lease or a retry time, a
		cursor's or an Event Log row's: those are UTC from the database's clock
		(`mariadb.utc_now`), so hosts with different clocks, time zones or DST agree on them."""
		return self._now()

	def monotonic(self) -> float:
		return time.monotonic()


class NoHeartbeat:
	def acquire(self) -> bool:
		return True

	def release(self) -> None:
		pass

	def close(self) -> None:
		pass


@dataclass(frozen=True)
class DrainerConfig:
	site: str
	dead_letter_topic: str = c.DEFAULT_DEAD_LETTER_TOPIC
	batch_size: int = c.DEFAULT_BATCH_SIZE
	lease_seconds: float = c.DEFAULT_LEASE_SECONDS
	max_runtime_seconds: float = c.DEFAULT_DRAINER_MAX_RUNTIME_SECONDS
	# a slice: after this long, or this many batches, the run hands over to a successor
	# queued behind the jobs already waiting (0: no bound; delivery/lifecycle.py)
	slice_seconds: float = c.DEFAULT_DRAINER_SLICE_SECONDS
	max_batches: int = 0
	idle_exit_seconds: float = 60.0
	poll_seconds: float = 5.0
	# bounded flush: librdkafka fails every message within message.timeout.ms, so a
	# little more than that is enough (kafka_config: message.timeout.ms 30000)
	flush_timeout_seconds: float = 31.0
	claim_lock_timeout_seconds: float = 10.0
	time_zone: str = "UTC"

	@property
	def lease(self) -> float:
		"""A lease outlives its batch's life from the claim (or its renewal, see
		`Drainer._renew`) to the mark: produce (bounded by the flush deadline), the next
		round's claim (lock wait), the bounded flush, up to two dead-letter sends, the mark;
		so it only expires when its drainer is gone or stuck."""
		return max(
			self.lease_seconds,
			3 * self.flush_timeout_seconds + self.claim_lock_timeout_seconds + self.poll_seconds + 5,
		)

	def used_up(self, elapsed: float, batches: int) -> str | None:
		"""Why a run that has lasted `elapsed` seconds and `batches` batches ends at this
		batch boundary: its slice is over, or one more cycle could pass the job timeout."""
		cycle = 2 * self.flush_timeout_seconds + self.claim_lock_timeout_seconds + 5
		if elapsed + cycle > self.max_runtime_seconds:
			return "max runtime"
		if self.slice_seconds and elapsed >= self.slice_seconds:
			return "slice over"
		if self.max_batches and batches >= self.max_batches:
			return "max batches"
		return None


@dataclass
class DrainStats:
	producers: int = 0
	batches: int = 0
	sent: int = 0
	failed: int = 0
	dead: int = 0
	dead_lettered: int = 0
	failed_batches: int = 0
	split_events: int = 0  # events handed to the producer in parts (delivery/parts.py)
	parts: int = 0  # the parts of those events
	exit_reason: str = ""


def new_owner() -> str:
	"""A drainer's name on the leases it takes: host, process and a random part."""
	return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
