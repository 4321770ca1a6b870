"""The drainer: one long-running loop per site that publishes the delivery queue in order.

It holds ONE producer for its whole run (issue "Delivery", point 2), and repeats:
1. claim a batch of bundles under the claim lock (`bundles.claim`: per company the
   bundles after its cursor, the company leased on its cursor; a company whose next
   bundle waits for its retry yields nothing), with the Dead rows whose dead-letter copy
   is still pending (`outbox.outcomes.claim_dead_letters`), and commit;
2. finish the batch started in the previous round: wait, bounded, for every delivery
   report, decide each bundle's outcome (`state.next_state`, `policy.classify`), copy
   new Dead events to the dead-letter topic, and record the outcome: a batch delivered in
   full becomes ONE receipt and the cursors move (`bundles.record_delivered`), by the
   `marker` (a second connection, in a thread) while this loop goes on; a batch with a
   failed event is recorded here (its company's cursor keeps the retry state, its
   undelivered events are marked Failed or Dead); the claimed bundles of a company it
   left waiting for a retry are dropped;
3. copy the claimed Dead rows whose dead-letter copy was pending (capture failures);
4. start the claimed batch: produce its messages in name order (= per-company sequence
   order) without waiting, so its acknowledgements arrive while the next round claims;
5. settle receipts into the Event Log (rows Sent) when a round had nothing to deliver,
   and under sustained load `bundles.SETTLE_AFTER_SECONDS` after the first receipt left
   unsettled;
6. when there is nothing to do, wait on the wake-up list (or until the next retry is
   due), and leave after `idle_exit_seconds` without work or before `max_runtime_seconds`
   (well inside the long queue's 1500 s job timeout) so a fresh drainer takes over.

Everything it touches comes in through the constructor (database, producer factory, wake
source, heartbeat, clock, configuration, retry policy), so it runs the same in an RQ
job (delivery/jobs.py) and in a test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from confluent_kafka import KafkaError

from erpnext_streaming import constants as c
from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import bundles, messages
from erpnext_streaming.delivery.bundles import Claimed
from erpnext_streaming.delivery.framing import Framer
from erpnext_streaming.delivery.marker import Marker, lost_a_deadlock
from erpnext_streaming.delivery.policy import Classified, RetryPolicy, classify, describe, unreadable
from erpnext_streaming.delivery.producer import (
	BatchResult,
	Delivery,
	OutgoingMessage,
	Producer,
	ProducerFactory,
	Sending,
)
from erpnext_streaming.delivery.state import Outcome, next_state
from erpnext_streaming.outbox.mariadb import (
	TransactionalDatabase,
	get_lock,
	lock_name,
	release_lock,
	use_read_committed,
)
from erpnext_streaming.outbox.outcomes import (
	claim_dead_letters,
	delivery_rows,
	mark_dead_lettered,
	mark_unsent,
	release_leases,
)
from erpnext_streaming.outbox.records import Lease, Published, Unsent

SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
# a claimed batch whose start waited longer than this (the previous batch's outage) is
# leased again for a full lease before it is produced
RENEW_AFTER_SECONDS = 5.0
# a claim rolled back as a deadlock's victim is run again, at most this often in all
CLAIM_ATTEMPTS = 3
# at most this many settle rounds (`bundles.SETTLE_RECEIPTS` receipts each) before leaving
LEAVE_SETTLE_ROUNDS = 50


class Clock(Protocol):
	def now(self) -> datetime:
		"""Naive local time, like frappe.utils.now_datetime (the Event Log's datetimes)."""
		...

	def monotonic(self) -> float: ...


class SystemClock:
	def __init__(self, now: Callable[[], datetime] = datetime.now):
		self._now = now

	def now(self) -> datetime:
		return self._now()

	def monotonic(self) -> float:
		return time.monotonic()


class WakeSource(Protocol):
	def wait(self, timeout: float) -> bool: ...

	def pending(self) -> bool: ...

	def clear(self) -> None: ...


class Heartbeat(Protocol):
	def acquire(self, ttl: float) -> bool: ...

	def beat(self, ttl: float) -> None: ...

	def release(self) -> None: ...


class NoHeartbeat:
	def acquire(self, ttl: float) -> bool:
		return True

	def beat(self, ttl: float) -> None:
		pass

	def release(self) -> None:
		pass


@dataclass(frozen=True)
class DrainerConfig:
	site: str
	dead_letter_topic: str = c.DEFAULT_DEAD_LETTER_TOPIC
	batch_size: int = c.DEFAULT_BATCH_SIZE
	lease_seconds: float = c.DEFAULT_LEASE_SECONDS
	max_runtime_seconds: float = c.DEFAULT_DRAINER_MAX_RUNTIME_SECONDS
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

	@property
	def cycle_budget(self) -> float:
		return 2 * self.flush_timeout_seconds + self.claim_lock_timeout_seconds + 5


@dataclass
class DrainStats:
	producers: int = 0
	batches: int = 0
	sent: int = 0
	failed: int = 0
	dead: int = 0
	dead_lettered: int = 0
	failed_batches: int = 0
	exit_reason: str = ""

	def as_dict(self) -> dict[str, Any]:
		return asdict(self)


@dataclass(frozen=True)
class InFlight:
	"""A started batch: its bundles, each bundle's events (Event Log names, in order), the
	events that failed before producing (`outcome`), and the producer's handle (or the
	result when no producer could be made)."""

	bundles: Sequence[Claimed]
	events: Sequence[Sequence[int]]
	outcome: dict[Any, Classified]
	sending: tuple[Producer, Sending] | BatchResult | None


def failed_reason(outcome: dict[Any, Classified]) -> str:
	return next(v.reason for v in outcome.values() if v.fatal)


def new_owner() -> str:
	return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Drainer:
	def __init__(
		self,
		db: TransactionalDatabase,
		producer_factory: ProducerFactory,
		wake: WakeSource,
		clock: Clock,
		config: DrainerConfig,
		policy: RetryPolicy,
		heartbeat: Heartbeat | None = None,
		secrets: Sequence[str] = (),
		log: logging.Logger | None = None,
		owner: str | None = None,
		rand: Callable[[], float] = random.random,
		framer: Framer | None = None,
		marker: Marker | None = None,
	):
		self.db = db
		self.producer_factory = producer_factory
		self.wake = wake
		self.clock = clock
		self.config = config
		self.policy = policy
		self.heartbeat = heartbeat or NoHeartbeat()
		self.secrets = tuple(s for s in secrets if s and len(s) >= 3)
		self.log = log or logging.getLogger("erpnext_streaming.drainer")
		self.owner = owner or new_owner()
		self.rand = rand
		self.framer = framer  # None: schemaless and single-object only (no registry)
		self.marker = marker  # None: every batch is marked in line, on `db`
		self.time_zone = ZoneInfo(config.time_zone or "UTC")
		self.stats = DrainStats()
		self._producer: Producer | None = None
		self._in_flight: InFlight | None = None
		# per cursor, the last bundle this drainer started: the next claim continues there
		# (the cursor itself moves only when the batch is recorded, maybe in the marker)
		self._claimed_through: dict[str, int] = {}
		self._lock: str | None = None
		self._dead_letters_retry_at = 0.0
		# when to settle under sustained load: armed by the first receipt after a settle
		self._settle_at: float | None = None

	# -- the loop ---------------------------------------------------------------------

	def run(self) -> DrainStats:
		config, ttl = self.config, self.config.lease
		self.prepare()
		if not self.heartbeat.acquire(ttl):
			self.stats.exit_reason = "another drainer is running"
			return self.stats
		started = self.clock.monotonic()
		idle_since: float | None = None
		try:
			while True:
				if self.clock.monotonic() - started + config.cycle_budget > config.max_runtime_seconds:
					self.finish_in_flight()
					self.stats.exit_reason = "max runtime"
					break
				self.heartbeat.beat(ttl)
				if self.cycle():
					idle_since = None
					continue
				now = self.clock.monotonic()
				idle_since = now if idle_since is None else idle_since
				if now - idle_since >= config.idle_exit_seconds:
					if self._last_look():
						idle_since = None
						continue
					self.stats.exit_reason = "idle"
					break
				self.wake.wait(self._wait_seconds(config.idle_exit_seconds - (now - idle_since)))
		finally:
			try:
				self.finish_in_flight()  # after an error, or a last look that started a batch
			except Exception:
				self.log.exception("erpnext_streaming: the batch in flight was not marked; its leases expire")
			finally:
				self._marks_done_quietly()
				self._leave_quietly()
				self.heartbeat.release()
				self._close_producer()
		return self.stats

	def prepare(self) -> None:
		"""READ COMMITTED for this connection (no gap locks; see outbox), and the lock name."""
		use_read_committed(self.db)
		self.db.commit()
		if self.marker is not None:
			self.marker.prepare()
		self._lock = lock_name(self.db, "claim")

	def _last_look(self) -> bool:
		"""Before leaving: give up the heartbeat first (a commit from now on enqueues a new
		drainer), then look once more, so a commit just before is not left waiting."""
		self.heartbeat.release()
		self.wake.clear()
		if self.cycle() or (self.wake.pending() and self.cycle()):
			return self.heartbeat.acquire(self.config.lease)
		return False

	def _leave_quietly(self) -> None:
		"""Before leaving: settle what this drainer delivered (bounded) and give up its
		companies' leases, so the next drainer starts at once (best effort: a lease left
		behind expires, a receipt left behind is settled by the next drainer or the sweeper)."""
		try:
			self.db.rollback()
			for _ in range(LEAVE_SETTLE_ROUNDS):
				if not self.settle():
					break
			with self._transaction():
				bundles.release(self.db, self.owner)
		except Exception:
			self.log.exception("erpnext_streaming: leaving without settling; the leases expire")

	def _wait_seconds(self, until_idle_exit: float) -> float:
		wait = min(self.config.poll_seconds, max(until_idle_exit, 0.0))
		due = bundles.next_attempt_due(self.db)
		self.db.commit()
		if due is not None:
			wait = min(wait, max((due - self.clock.now()).total_seconds(), 0.0) + 0.05)
		return max(wait, 0.05)

	def cycle(self) -> bool:
		"""One round: claim the next batch, finish the batch in flight (delivery reports,
		outcomes), start the next one, settle when there was nothing to deliver; True if it
		did anything.

		The claim runs while the previous batch's acknowledgements are on their way, so the
		database and the broker work at the same time. Order stays as without the overlap:
		the next batch continues each company after the bundles this drainer started
		(`claim(after=...)`), is produced only after the previous batch's reports are in,
		and drops the bundles of a company that batch left waiting for a retry, as any claim
		would.
		"""
		if self._lock is None:
			self.prepare()
		did = False
		in_flight = self._in_flight
		claimed, dead = self._claim(
			dead_letters=self.clock.monotonic() >= self._dead_letters_retry_at, after=self._claimed_through
		)
		claimed_at = self.clock.monotonic()
		try:
			if in_flight is not None:
				self._in_flight = None
				claimed = self._drop(claimed, self.finish(in_flight))
				did = True
			if dead:  # before the next batch: a dead-letter send must not flush or replace its producer
				did = self.copy_dead_letters(dead) or did
			if claimed and self.clock.monotonic() - claimed_at > RENEW_AFTER_SECONDS:
				claimed = self._renew(claimed)
			if claimed:
				self._in_flight = self.start(claimed)
				did = True
		except Exception:
			if self._in_flight is None:
				self._release_quietly(claimed)
			raise
		if not did:
			return self.settle()
		if self._settle_at is not None and self.clock.monotonic() >= self._settle_at:
			self.settle()
		return did

	def settle(self) -> bool:
		"""Settle a chunk of receipts into the Event Log (`bundles.settle`); True if any.
		Under sustained load the next chunk is due `bundles.SETTLE_AFTER_SECONDS` later;
		once nothing is left, the next receipt starts that clock again (so a backlog drained
		after a pause, an outage, is not held up by a settle at its first batch)."""
		self._marks_done()
		with self._transaction():
			settled = bundles.settle(self.db, self.clock.now())
		self._settle_at = self.clock.monotonic() + bundles.SETTLE_AFTER_SECONDS if settled else None
		return settled > 0

	def _claim(
		self, dead_letters: bool, after: dict[str, int] | None = None
	) -> tuple[list[Claimed], list[Any]]:
		"""Claim a batch and, if `dead_letters`, the Dead rows whose copy is pending: under
		one hold of the claim lock, in one transaction. A claim rolled back as a deadlock's
		victim is run again: the marker's record of the previous batch writes the same
		cursor rows, in its own order, at the same time."""
		db = self.db
		if not get_lock(db, self._lock, self.config.claim_lock_timeout_seconds):
			db.commit()
			return [], []
		try:
			for _ in range(CLAIM_ATTEMPTS - 1):
				try:
					return self._claim_once(dead_letters, after)
				except Exception as e:
					if not lost_a_deadlock(e):
						raise
			return self._claim_once(dead_letters, after)
		finally:
			release_lock(db, self._lock)

	def _claim_once(
		self, dead_letters: bool, after: dict[str, int] | None
	) -> tuple[list[Claimed], list[Any]]:
		db = self.db
		try:
			now = self.clock.now()
			until = now + timedelta(seconds=self.config.lease)
			claimed = bundles.claim(db, self.owner, until, now, self.config.batch_size, after=after)
			dead = (
				claim_dead_letters(db, Lease(self.owner, until), now, self.config.batch_size)
				if dead_letters
				else []
			)
			db.commit()
			return claimed, dead
		except Exception:
			db.rollback()
			raise

	@contextlib.contextmanager
	def _transaction(self) -> Iterator[None]:
		"""Commit what the block wrote, or roll it back and re-raise."""
		try:
			yield
			self.db.commit()
		except Exception:
			self.db.rollback()
			raise

	@staticmethod
	def _drop(claimed: list[Claimed], cursors: set[str]) -> list[Claimed]:
		"""The claimed bundles but those of `cursors` (waiting for a retry: not started, so
		they are claimed again after it; the company stays leased to this drainer)."""
		return [b for b in claimed if b.cursor not in cursors] if cursors else claimed

	def _renew(self, claimed: list[Claimed]) -> list[Claimed]:
		"""The previous batch took long to finish (an outage: bounded flush, dead-letter
		copies): lease the claimed companies for a full lease from now, so the lease
		outlives their own round; drop the bundles of a company lost meanwhile (expired and
		taken by another drainer)."""
		self._marks_done()  # the previous batch's record writes cursor rows too (no deadlock)
		until = self.clock.now() + timedelta(seconds=self.config.lease)
		with self._transaction():
			held = bundles.renew(self.db, self.owner, {b.cursor for b in claimed}, until)
		return [b for b in claimed if b.cursor in held]

	def _release_quietly(self, claimed: Sequence[Claimed]) -> None:
		"""After an error: give back the companies of claimed bundles that were not started
		(best effort; else their leases expire)."""
		if not claimed:
			return
		try:
			self.db.rollback()
			bundles.release(self.db, self.owner, {b.cursor for b in claimed})
			self.db.commit()
		except Exception:
			self.log.exception("erpnext_streaming: claimed bundles not given back; their leases expire")

	def _marks_done(self) -> None:
		if self.marker is not None:
			self.marker.wait()

	def _marks_done_quietly(self) -> None:
		try:
			self._marks_done()
		except Exception:
			self.log.exception("erpnext_streaming: a delivered batch was not recorded; it is sent again")

	def finish_in_flight(self) -> bool:
		"""Finish the batch in flight, if any (before leaving, or before a batch of the caller's)."""
		in_flight, self._in_flight = self._in_flight, None
		if in_flight is None:
			return False
		self.finish(in_flight)
		return True

	# -- publishing -------------------------------------------------------------------

	def start(self, claimed: Sequence[Claimed]) -> InFlight:
		"""Read the bundles' messages and hand them to the producer (no waiting)."""
		framer = self.framer
		outcome: dict[Any, Classified] = {}
		outgoing: list[OutgoingMessage] = []
		events: list[list[int]] = []
		for bundle in claimed:
			ready: list[OutgoingMessage] = []
			unsendable: dict[Any, Classified] = {}
			try:
				refs = messages.read(bundle.messages, framer, ready, unsendable)
			except Exception as e:  # damaged, or not written by this app: nothing of it is sent
				refs, ready = self._unreadable(bundle, e), []
				unsendable = dict.fromkeys(refs, unreadable(bundle.name, e))
			outgoing += ready
			outcome.update(unsendable)
			events.append(refs)
		for bundle in claimed:  # in name order
			self._claimed_through[bundle.cursor] = bundle.name
		sending = self._start(outgoing) if outgoing else None
		return InFlight(claimed, events, outcome, sending)

	def _unreadable(self, bundle: Claimed, error: Exception) -> list[Any]:
		"""The events of a bundle that cannot be read, if its events line still says which:
		they go Dead with the reason, their dead-letter copies and a requeue built from their
		Event Log rows, which hold the payloads (a bundle is only the delivery queue)."""
		try:
			refs = messages.refs(bundle.messages)
		except Exception:
			refs = []
		self.log.warning(
			"erpnext_streaming: bundle %s is unreadable; its %d events go Dead: %s",
			bundle.name,
			len(refs),
			error,
		)
		return refs

	def finish(self, in_flight: InFlight) -> set[str]:
		"""Wait for the batch's delivery reports and record its outcome: a receipt for the
		delivered events and the cursors moved past the bundles done; a company whose bundle
		has an undelivered event (retriable) keeps its cursor before that bundle with the
		retry state, its undelivered events marked Failed; events that can never be
		delivered, or whose bundle ran out of attempts, go Dead with a dead-letter copy.
		Returns the cursors left waiting for a retry."""
		outcome = in_flight.outcome
		deliveries = self._finish(in_flight.sending).deliveries if in_flight.sending is not None else {}
		now = self.clock.now()
		max_attempts = self.policy.max_attempts
		sent: list[Published] = []
		through: dict[str, int] = {}
		waiting: dict[str, tuple[int, datetime, str]] = {}  # cursor: (attempts, due, reason)
		failed: list[Unsent] = []
		dying: list[tuple[Any, int, str, bool]] = []  # (name, attempts, reason, too large)
		for bundle, refs in zip(in_flight.bundles, in_flight.events, strict=True):
			if bundle.cursor in waiting:
				continue  # after its company's failed bundle: sent again with it
			done: list[Published] = []
			undelivered: list[tuple[Any, Classified, bool]] = []
			for ref in refs:
				too_large = False
				if ref not in outcome:
					delivery = deliveries[ref]
					if delivery.error is None:
						done.append(Published(ref, delivery.partition, delivery.offset))
						continue
					outcome[ref] = classify(delivery.error)
					too_large = delivery.error.code() in SIZE_ERRORS
				undelivered.append((ref, outcome[ref], too_large))
			retriable = [u for u in undelivered if u[1].outcome is Outcome.RETRIABLE]
			transition = next_state(Status.QUEUED, Outcome.RETRIABLE, bundle.attempts, max_attempts)
			if retriable and transition.status == Status.FAILED:
				due = self.policy.next_attempt_at(transition.attempts, now, self.rand)
				if transition.attempts == 1 and all(verdict.fatal for _, verdict, _ in retriable):
					# lost with its producer (e.g. fenced when the broker came back): the next
					# batch has a new one, so the first retry is at once; later ones back off
					due = now
				reason = self.redact(retriable[0][1].reason)
				waiting[bundle.cursor] = (transition.attempts, due, reason)
				self._claimed_through.pop(bundle.cursor, None)  # claimed again from its cursor
				for ref, verdict, _ in undelivered:
					failed.append(
						Unsent(
							ref,
							Status.FAILED,
							transition.attempts,
							self.redact(verdict.reason),
							next_attempt_at=due,
						)
					)
				continue
			sent += done
			through[bundle.cursor] = bundle.name
			for ref, verdict, too_large in undelivered:
				attempts = next_state(Status.QUEUED, verdict.outcome, bundle.attempts, max_attempts).attempts
				reason = self.redact(verdict.reason)
				if verdict.outcome is Outcome.RETRIABLE:
					reason = f"gave up after {attempts} attempts: {reason}"
				dying.append((ref, attempts, reason, too_large))
		if any(v.fatal for v in outcome.values()) and self._producer is not None:
			self.log.warning("erpnext_streaming: the producer is replaced after: %s", failed_reason(outcome))
			self._close_producer(timeout=0)
		copies = self._send_dead_letters(self._dying_rows(dying)) if dying else {}
		unsent = failed + [
			Unsent(name, Status.DEAD, attempts, reason, dead_letter=copies.get(name))
			for name, attempts, reason, _ in dying
		]

		now = self.clock.now()
		if sent and self._settle_at is None:
			self._settle_at = self.clock.monotonic() + bundles.SETTLE_AFTER_SECONDS
		if self.marker is not None and not unsent and not waiting:
			self.marker.submit(sent, through, now)  # recorded while the next batch is claimed and produced
		else:
			self._marks_done()
			with self._transaction():
				bundles.record_delivered(self.db, sent, through, now)
				if unsent or waiting:  # only where this drainer still leases the company (a late
					# drainer never overwrites the outcome of a newer owner's delivery)
					held = bundles.still_leased(self.db, self.owner, {b.cursor for b in in_flight.bundles})
					cursor_of = {
						ref: b.cursor
						for b, refs in zip(in_flight.bundles, in_flight.events, strict=True)
						for ref in refs
					}
					mark_unsent(self.db, [u for u in unsent if cursor_of[u.name] in held], now)
					for cursor, (attempts, due, reason) in waiting.items():
						bundles.record_retry(self.db, self.owner, cursor, attempts, due, reason, now)
		stats = self.stats
		stats.batches += 1
		stats.sent += len(sent)
		stats.failed += len(failed)
		stats.dead += len(dying)
		stats.dead_lettered += len(copies)
		if failed:
			stats.failed_batches += 1
			self.log.warning(
				"erpnext_streaming: %d of %d events not delivered, retried from %s: %s",
				len(failed),
				sum(len(refs) for refs in in_flight.events),
				min(due for _, due, _ in waiting.values()).isoformat(sep=" ", timespec="seconds"),
				failed[0].last_error,
			)
		for name, _, reason, _ in dying:
			self.log.warning("erpnext_streaming: Event Log %s is Dead: %s", name, reason)
		return set(waiting)

	def _dying_rows(self, dying: Sequence[tuple[Any, int, str, bool]]) -> list[tuple[Any, int, str, bool]]:
		"""The Event Log rows of dying events (a dead-letter copy is built from the row)."""
		rows = {r["name"]: r for r in delivery_rows(self.db, [name for name, *_ in dying])}
		self.db.commit()
		missing = {"topic": "", "payload": "", "company": "", "message_key": "", "event_id": ""}
		return [
			(rows.get(name) or {"name": name, **missing}, attempts, reason, too_large)
			for name, attempts, reason, too_large in dying
		]

	def copy_dead_letters(self, rows: Sequence[Any]) -> bool:
		"""Dead rows whose dead-letter copy is pending (capture failures, earlier misses)."""
		copies = self._send_dead_letters(
			[(r, r["attempts"] or 0, r["last_error"] or "", False) for r in rows]
		)
		now = self.clock.now()
		with self._transaction():
			mark_dead_lettered(self.db, list(copies.values()), now)
			release_leases(self.db, self.owner, [r["name"] for r in rows if r["name"] not in copies])
		self.stats.dead_lettered += len(copies)
		return bool(copies)

	def _send_dead_letters(self, dying: Sequence[tuple[Any, int, str, bool]]) -> dict[Any, Published]:
		"""Copy rows to the dead-letter topic; the copies that arrived, by row name. A copy
		refused for its size is sent again without the value (it stays in the Event Log)."""
		topic = self.config.dead_letter_topic
		if not dying or not topic:
			return {}
		site, tz = self.config.site, self.time_zone
		copies: dict[Any, Published] = {}
		attempt = [(row, attempts, reason, omit) for row, attempts, reason, omit in dying]
		for _ in range(2):
			result = self._send(
				[
					messages.dead_letter(row, site, tz, topic, reason, attempts, omit)
					for row, attempts, reason, omit in attempt
				]
			)
			retry = []
			for row, attempts, reason, omit in attempt:
				delivery = result.deliveries[row["name"]]
				if delivery.error is None:
					copies[row["name"]] = Published(row["name"], delivery.partition, delivery.offset)
				elif delivery.error.code() in SIZE_ERRORS and not omit:
					retry.append((row, attempts, reason, True))
				else:
					self._dead_letters_retry_at = self.clock.monotonic() + self.policy.delay(1, self.rand)
					self.log.warning(
						"erpnext_streaming: dead-letter copy of Event Log %s failed, will retry: %s",
						row["name"],
						self.redact(describe(delivery.error)),
					)
			if not retry:
				break
			attempt = retry
		return copies

	def _send(self, outgoing: Sequence[OutgoingMessage]) -> BatchResult:
		return self._finish(self._start(outgoing))

	def _start(self, outgoing: Sequence[OutgoingMessage]) -> tuple[Producer, Sending] | BatchResult:
		if self._producer is None:
			try:
				self._producer = self.producer_factory()
			except Exception as e:
				# e.g. an unreadable certificate: the rows fail (backoff, then Dead with this
				# reason, visible in the Event Log) instead of crashing every drainer
				error = KafkaError(KafkaError._FAIL, f"cannot create the producer: {type(e).__name__}: {e}")
				self.log.warning("erpnext_streaming: %s", self.redact(describe(error)))
				return BatchResult({m.ref: Delivery(m.ref, error) for m in outgoing})
			self.stats.producers += 1
		return self._producer, self._producer.start(outgoing, self.config.flush_timeout_seconds)

	def _finish(self, started: tuple[Producer, Sending] | BatchResult) -> BatchResult:
		if isinstance(started, BatchResult):
			return started
		producer, sending = started
		result = producer.finish(sending)
		if result.discard and producer is self._producer:
			if result.fatal is not None:
				self.log.warning(
					"erpnext_streaming: fatal producer error, the producer is replaced: %s",
					self.redact(describe(result.fatal)),
				)
			self._close_producer(timeout=0)
		return result

	def _close_producer(self, timeout: float | None = None) -> None:
		producer, self._producer = self._producer, None
		if producer is not None:
			try:
				producer.close(self.config.flush_timeout_seconds if timeout is None else timeout)
			except Exception:
				self.log.exception("erpnext_streaming: closing the producer failed")

	def redact(self, text: str) -> str:
		for secret in self.secrets:
			text = text.replace(secret, "***")
		return text
