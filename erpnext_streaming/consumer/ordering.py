"""Drop duplicates, restore per-company order, and hold a watermark that tolerates late events.

What the stream guarantees (docs/architecture.md): at least once (a retried batch can
repeat messages, and a consumer restart re-reads), each event with a deterministic
`event_id`; per company, a gapless `es_company_sequence` in commit order across all
topics; a Dead row leaves a gap that may be filled later by a requeue.

`Deduplicator(capacity)`: the event ids seen, bounded (oldest forgotten first), so memory
stays flat; a duplicate older than `capacity` distinct events is not recognised.

`Reorderer(lateness, order=...)`: per company,
- `order="sequence"` (default; subscribe to every topic of the catalog, since the sequence
  spans them): events come out in `es_company_sequence` order. An event waits for a missing
  predecessor until the company's watermark passes it; then the missing numbers are given
  up (`gaps`) and a predecessor that still arrives is released at once with `late=True`.
- `order="event_time"` (for a subset of topics): events come out in `event_time` order
  (then sequence) once the watermark passes them; an event older than what was already
  released is `late`.

The watermark of a company is the newest time seen minus `lateness`: an event up to
`lateness` behind the newest one takes its place in the order; later than that it is
late. The time is the event's `emitted_at` (when it was captured, which follows commit
order) in sequence order, and its `event_time` in event-time order: business time can go
back (a back-dated invoice, the reversal rows of a cancellation carry the original
posting time), so it cannot say how long to wait for a missing sequence number. When the input is several partitions read at different speeds (a backlog), the
reader knows more: `advance(horizon)` caps every watermark at `horizon - lateness`, where
`horizon` is how far the slowest partition has been read (`EventConsumer` passes the
oldest position of the partitions not yet caught up), so catching up on one partition
never makes another partition's events late. `late="emit"` (default) releases late events flagged, `late="drop"` counts and drops
them. `flush()` releases everything still waiting (end of input, or idle).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from erpnext_streaming.consumer.decoding import Event

ORDERS = ("sequence", "event_time")
LATE_POLICIES = ("emit", "drop")


class Deduplicator:
	"""Event ids seen, at most `capacity` of them (the oldest is forgotten first)."""

	def __init__(self, capacity: int = 100_000):
		if capacity < 1:
			raise ValueError("capacity must be at least 1")
		self.capacity = capacity
		self._seen: OrderedDict[str, None] = OrderedDict()

	def seen(self, event_id: str) -> bool:
		"""True if `event_id` was seen (a duplicate); otherwise remember it and say False."""
		if event_id in self._seen:
			self._seen.move_to_end(event_id)
			return True
		self._seen[event_id] = None
		if len(self._seen) > self.capacity:
			self._seen.popitem(last=False)
		return False

	def __len__(self) -> int:
		return len(self._seen)


@dataclass
class _Company:
	next_sequence: int | None
	newest: datetime | None = None
	released_time: datetime | None = None  # event_time order: the newest time released
	heap: list = field(default_factory=list)
	gaps: list[int] = field(default_factory=list)


class Reorderer:
	"""Dedup + per-company order + watermark (module doc). `push(event) -> released events`."""

	def __init__(
		self,
		lateness: timedelta = timedelta(seconds=30),
		order: str = "sequence",
		late: str = "emit",
		dedup: Deduplicator | int | None = 100_000,
		first_sequence: int | None = None,
		max_waiting: int = 100_000,
	):
		if order not in ORDERS:
			raise ValueError(f"order must be one of {ORDERS}")
		if late not in LATE_POLICIES:
			raise ValueError(f"late must be one of {LATE_POLICIES}")
		self.lateness = lateness
		self.order = order
		self.late_policy = late
		self.dedup = Deduplicator(dedup) if isinstance(dedup, int) else dedup
		# None: the stream may be joined mid-way; the first event released fixes the start
		self.first_sequence = first_sequence
		self.max_waiting = max_waiting
		self.stats: Counter[str] = Counter()
		self.horizon: datetime | None = None  # see advance()
		self._companies: dict[str, _Company] = {}
		self._tiebreak = itertools.count()

	# -- public -------------------------------------------------------------------------

	def push(self, event: Event) -> list[Event]:
		self.stats["received"] += 1
		if self.dedup is not None and self.dedup.seen(event.event_id):
			self.stats["duplicates"] += 1
			return []
		company = self._company(event.company)
		moment = self.time_of(event)
		if company.newest is None or moment > company.newest:
			company.newest = moment
		if self._is_late(company, event):
			self.stats["late"] += 1
			if self.late_policy == "drop":
				self.stats["dropped_late"] += 1
				return []
			return self._released([replace(event, late=True)])
		heapq.heappush(company.heap, (self._key(event), next(self._tiebreak), event))
		return self._released(self._release(company, flush=False))

	def advance(self, horizon: datetime | None) -> list[Event]:
		"""Cap the watermarks at `horizon - lateness` (None: no cap; `datetime.min` with a
		time zone holds everything that waits) and release what that allows now."""
		self.horizon = horizon
		out = []
		for company in self._companies.values():
			out.extend(self._release(company, flush=False))
		return self._released(out)

	def flush(self) -> list[Event]:
		"""Release every waiting event (giving up missing sequence numbers)."""
		out = []
		for company in self._companies.values():
			out.extend(self._release(company, flush=True))
		return self._released(out)

	def time_of(self, event: Event) -> datetime:
		"""The time the watermark follows: `emitted_at` in sequence order, else `event_time`."""
		if self.order == "sequence" and event.emitted_at is not None:
			return event.emitted_at
		return event.event_time

	def watermark(self, company: str) -> datetime | None:
		state = self._companies.get(company)
		return self._watermark(state) if state and state.newest else None

	def gaps(self, company: str) -> list[int]:
		"""Sequence numbers given up for `company` (Dead rows, or events later released as late)."""
		state = self._companies.get(company)
		return list(state.gaps) if state else []

	# -- internals ----------------------------------------------------------------------

	def _company(self, name: str) -> _Company:
		state = self._companies.get(name)
		if state is None:
			state = self._companies[name] = _Company(next_sequence=self.first_sequence)
		return state

	def _key(self, event: Event) -> tuple:
		if self.order == "sequence" and event.sequence is not None:
			return (0, event.sequence, event.event_time)
		# no sequence (another producer) or event-time order: by time, then sequence
		return (1 if self.order == "sequence" else 0, event.event_time, event.sequence or 0)

	def _is_late(self, company: _Company, event: Event) -> bool:
		if self.order == "sequence" and event.sequence is not None:
			return company.next_sequence is not None and event.sequence < company.next_sequence
		return company.released_time is not None and event.event_time < company.released_time

	def _watermark(self, company: _Company) -> datetime:
		newest = company.newest if self.horizon is None else min(company.newest, self.horizon)
		return newest - self.lateness

	def _passed(self, company: _Company, event: Event) -> bool:
		return self.time_of(event) <= self._watermark(company)

	def _release(self, company: _Company, flush: bool) -> list[Event]:
		out = []
		heap = company.heap
		while heap:
			_, _, head = heap[0]
			overflow = len(heap) > self.max_waiting
			if self.order == "sequence" and head.sequence is not None:
				expected = company.next_sequence
				# the expected number, or one already released (a second event with it: let it go)
				if expected is None or head.sequence > expected:
					if not (flush or overflow or self._passed(company, head)):
						break
					if expected is not None:
						company.gaps.extend(range(expected, head.sequence))
						self.stats["gaps"] += head.sequence - expected
				company.next_sequence = max(company.next_sequence or 0, head.sequence + 1)
			elif not (flush or overflow or self._passed(company, head)):
				break
			heapq.heappop(heap)
			if company.released_time is None or head.event_time > company.released_time:
				company.released_time = head.event_time
			out.append(head)
		return out

	def _released(self, events: list[Event]) -> list[Event]:
		self.stats["released"] += len(events)
		return events
