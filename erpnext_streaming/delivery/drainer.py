"""The drainer: one long-running loop per site that publishes the outbox in order.

It holds ONE producer for its whole run (issue "Delivery", point 2), and repeats:
1. claim a batch under the claim lock (`outbox.claim`: leases, per-company prefixes,
   Failed rows not yet due hold back their company), with the Dead rows whose dead-letter
   copy is still pending (`outbox.claim_dead_letters`), and commit;
2. finish the batch started in the previous round: wait, bounded, for every delivery
   report, decide each row's next state (`state.next_state`, `policy.classify`), copy new
   Dead rows to the dead-letter topic, and mark the rows: a batch delivered in full is
   marked Sent by the `marker` (a second connection, in a thread) while this loop goes
   on; a batch with a Failed or Dead row is marked here, in two statements, after any
   pending mark; the claimed rows of a company it left with a Failed row are given back;
3. copy the claimed Dead rows whose dead-letter copy was pending (capture failures);
4. start the claimed batch: produce it in name order (= per-company sequence order)
   without waiting, so its acknowledgements arrive while the next round claims;
5. when there is nothing to do, wait on the wake-up list (or until the next Failed row is
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
from erpnext_streaming import outbox
from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import messages
from erpnext_streaming.delivery.framing import Framer, FramingError
from erpnext_streaming.delivery.marker import Marker
from erpnext_streaming.delivery.policy import Classified, RetryPolicy, classify, describe, unencodable
from erpnext_streaming.delivery.producer import (
	BatchResult,
	Delivery,
	OutgoingMessage,
	Producer,
	ProducerFactory,
	Sending,
)
from erpnext_streaming.delivery.state import Outcome, next_state
from erpnext_streaming.outbox import Lease, Published, Unsent

SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
# a claimed batch whose start waited longer than this (the previous batch's outage) is
# leased again for a full lease before it is produced
RENEW_AFTER_SECONDS = 5.0
# how often a round claims without continuing after the batch in flight (see `cycle`)
PLAIN_CLAIM_SECONDS = 30.0


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
	"""A started batch: its rows, the rows that failed before producing (`outcome`), the
	producer's handle (or the result when no producer could be made) and, per company,
	the last row in it (where the next claim continues)."""

	rows: Sequence[Any]
	outcome: dict[Any, Classified]
	sending: tuple[Producer, Sending] | BatchResult | None
	last_by_company: dict[Any, int]


def failed_reason(outcome: dict[Any, Classified]) -> str:
	return next(v.reason for v in outcome.values() if v.fatal)


def new_owner() -> str:
	return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Drainer:
	def __init__(
		self,
		db: outbox.TransactionalDatabase,
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
		self._plain_claim_at = 0.0
		self._lock: str | None = None
		self._dead_letters_retry_at = 0.0

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
				self.heartbeat.release()
				self._close_producer()
		return self.stats

	def prepare(self) -> None:
		"""READ COMMITTED for this connection (no gap locks; see outbox), and the lock name."""
		outbox.use_read_committed(self.db)
		self.db.commit()
		if self.marker is not None:
			self.marker.prepare()
		self._lock = outbox.lock_name(self.db, "claim")

	def _last_look(self) -> bool:
		"""Before leaving: give up the heartbeat first (a commit from now on enqueues a new
		drainer), then look once more, so a commit just before is not left waiting."""
		self.heartbeat.release()
		self.wake.clear()
		if self.cycle() or (self.wake.pending() and self.cycle()):
			return self.heartbeat.acquire(self.config.lease)
		return False

	def _wait_seconds(self, until_idle_exit: float) -> float:
		wait = min(self.config.poll_seconds, max(until_idle_exit, 0.0))
		due = outbox.next_attempt_due(self.db)
		self.db.commit()
		if due is not None:
			wait = min(wait, max((due - self.clock.now()).total_seconds(), 0.0) + 0.05)
		return max(wait, 0.05)

	def cycle(self) -> bool:
		"""One round: claim the next batch, finish the batch in flight (delivery reports,
		marks), start the next one; True if it did anything.

		The claim runs while the previous batch's acknowledgements are on their way, so the
		database and the broker work at the same time. Order stays as without the overlap:
		the next batch continues each company after the rows in flight (`claim(after=...)`),
		is produced only after their reports are in, and gives back the rows of a company
		whose batch left a Failed row, which holds them back as any claim would. Every
		`PLAIN_CLAIM_SECONDS` one round claims without continuing, so a row requeued behind
		the rows in flight is not left waiting while its company has a backlog.
		"""
		if self._lock is None:
			self.prepare()
		did = False
		if self._in_flight is not None and self.clock.monotonic() >= self._plain_claim_at:
			did = self.finish_in_flight()
		in_flight = self._in_flight
		if in_flight is None:
			self._plain_claim_at = self.clock.monotonic() + PLAIN_CLAIM_SECONDS
			self._marks_done()  # a claim from each company's first pending row sees them marked
		rows, dead = self._claim(
			dead_letters=self.clock.monotonic() >= self._dead_letters_retry_at,
			after=in_flight.last_by_company if in_flight else None,
		)
		claimed_at = self.clock.monotonic()
		try:
			if in_flight is not None:
				self._in_flight = None
				rows = self._give_back(rows, self.finish(in_flight))
				did = True
			if dead:  # before the next batch: a dead-letter send must not flush or replace its producer
				did = self.copy_dead_letters(dead) or did
			if rows and self.clock.monotonic() - claimed_at > RENEW_AFTER_SECONDS:
				rows = self._renew(rows)
			if rows:
				self._in_flight = self.start(rows)
				did = True
		except Exception:
			if self._in_flight is None:
				self._release_quietly(rows)
			raise
		return did

	def _claim(self, dead_letters: bool, after: dict[Any, int] | None = None) -> tuple[list[Any], list[Any]]:
		"""Claim a batch and, if `dead_letters`, the Dead rows whose copy is pending: under
		one hold of the claim lock, in one transaction."""
		db = self.db
		if not outbox.get_lock(db, self._lock, self.config.claim_lock_timeout_seconds):
			db.commit()
			return [], []
		try:
			now = self.clock.now()
			lease = Lease(self.owner, now + timedelta(seconds=self.config.lease))
			rows = outbox.claim(db, lease, now, self.config.batch_size, after=after)
			dead = outbox.claim_dead_letters(db, lease, now, self.config.batch_size) if dead_letters else []
			db.commit()
			return rows, dead
		except Exception:
			db.rollback()
			raise
		finally:
			outbox.release_lock(db, self._lock)

	@contextlib.contextmanager
	def _transaction(self) -> Iterator[None]:
		"""Commit what the block wrote, or roll it back and re-raise."""
		try:
			yield
			self.db.commit()
		except Exception:
			self.db.rollback()
			raise

	def _give_back(self, rows: list[Any], companies: set[Any]) -> list[Any]:
		"""Release the claimed rows of `companies` (a Failed row holds them back)."""
		back = [r for r in rows if r["company"] in companies] if companies else []
		if not back:
			return rows
		with self._transaction():
			outbox.release_leases(self.db, self.owner, outbox.leased_names(back))
		return [r for r in rows if r["company"] not in companies]

	def _renew(self, rows: list[Any]) -> list[Any]:
		"""The previous batch took long to finish (an outage: bounded flush, dead-letter
		copies): lease the claimed rows for a full lease from now, so the lease outlives
		their own round. If one was lost meanwhile (expired and taken), give them all back."""
		names = outbox.leased_names(rows)
		until = self.clock.now() + timedelta(seconds=self.config.lease)
		with self._transaction():
			renewed = outbox.renew_leases(self.db, self.owner, names, until)
			if renewed != len(names):
				outbox.release_leases(self.db, self.owner, names)
		return rows if renewed == len(names) else []

	def _release_quietly(self, rows: Sequence[Any]) -> None:
		"""After an error: give back claimed rows that were not started (best effort; else
		their lease expires)."""
		if not rows:
			return
		try:
			self.db.rollback()
			outbox.release_leases(self.db, self.owner, outbox.leased_names(rows))
			self.db.commit()
		except Exception:
			self.log.exception("erpnext_streaming: claimed rows not given back; their leases expire")

	def _marks_done(self) -> None:
		if self.marker is not None:
			self.marker.wait()

	def _marks_done_quietly(self) -> None:
		try:
			self._marks_done()
		except Exception:
			self.log.exception("erpnext_streaming: a delivered batch was not marked Sent; its leases expire")

	def finish_in_flight(self) -> bool:
		"""Finish the batch in flight, if any (before leaving, or before a batch of the caller's)."""
		in_flight, self._in_flight = self._in_flight, None
		if in_flight is None:
			return False
		self.finish(in_flight)
		return True

	# -- publishing -------------------------------------------------------------------

	def start(self, rows: Sequence[Any]) -> InFlight:
		"""Build the rows' messages and hand them to the producer (no waiting)."""
		config = self.config
		outcome: dict[Any, Classified] = {}
		outgoing: list[OutgoingMessage] = []
		for row in rows:
			try:
				outgoing.append(messages.build(row, config.site, self.time_zone, self.framer))
			except FramingError as e:  # before anything is produced: a refused schema never goes out
				outcome[row["name"]] = e.classified()
			except Exception as e:
				outcome[row["name"]] = unencodable(e)
		last_by_company = {row["company"]: row["name"] for row in rows}  # rows come in name order
		return InFlight(rows, outcome, self._start(outgoing) if outgoing else None, last_by_company)

	def finish(self, in_flight: InFlight) -> set[Any]:
		"""Wait for the batch's delivery reports, decide each row's next state, copy new Dead
		rows to the dead-letter topic and mark the rows in two statements (Sent; Failed/Dead).
		Returns the companies left with a Failed row."""
		rows, outcome = in_flight.rows, in_flight.outcome
		deliveries = self._finish(in_flight.sending).deliveries if in_flight.sending is not None else {}
		now = self.clock.now()
		sent: list[Published] = []
		unsent: list[Unsent] = []
		dying: list[tuple[Any, int, str, bool]] = []
		for row in rows:
			name = row["name"]
			too_large = False
			if name not in outcome:
				delivery = deliveries[name]
				if delivery.error is None:
					sent.append(Published(name, delivery.partition, delivery.offset))
					continue
				outcome[name] = classify(delivery.error)
				too_large = delivery.error.code() in SIZE_ERRORS
			verdict = outcome[name]
			transition = next_state(
				row["status"], verdict.outcome, row["attempts"] or 0, self.policy.max_attempts
			)
			reason = self.redact(verdict.reason)
			if transition.status == Status.FAILED:
				due = self.policy.next_attempt_at(transition.attempts, now, self.rand)
				unsent.append(Unsent(name, Status.FAILED, transition.attempts, reason, next_attempt_at=due))
			else:
				if transition.attempts >= self.policy.max_attempts and verdict.outcome is Outcome.RETRIABLE:
					reason = f"gave up after {transition.attempts} attempts: {reason}"
				dying.append((row, transition.attempts, reason, too_large))
		if any(v.fatal for v in outcome.values()) and self._producer is not None:
			self.log.warning("erpnext_streaming: the producer is replaced after: %s", failed_reason(outcome))
			self._close_producer(timeout=0)
		copies = self._send_dead_letters(dying)
		for row, attempts, reason, _ in dying:
			unsent.append(
				Unsent(row["name"], Status.DEAD, attempts, reason, dead_letter=copies.get(row["name"]))
			)

		now = self.clock.now()
		if self.marker is not None and not unsent:
			self.marker.submit(sent, now)  # marked while the next batch is claimed and produced
		else:
			self._marks_done()
			with self._transaction():
				if unsent:  # only where this drainer still leases the company (a late drainer never
					# overwrites a newer owner's rows: only each company's first row carries the lease)
					held = outbox.still_leased(self.db, self.owner, outbox.lease_holders(rows))
					company_of = {row["name"]: row["company"] for row in rows}
					unsent = [u for u in unsent if company_of[u.name] in held]
				outbox.mark_sent(self.db, sent, now)
				outbox.mark_unsent(self.db, self.owner, unsent, now)
		failed = [u for u in unsent if u.status == Status.FAILED]
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
				len(rows),
				min(u.next_attempt_at for u in failed).isoformat(sep=" ", timespec="seconds"),
				failed[0].last_error,
			)
		for row, _, reason, _ in dying:
			self.log.warning("erpnext_streaming: Event Log %s is Dead: %s", row["name"], reason)
		failed_names = {u.name for u in failed}
		return {row["company"] for row in rows if row["name"] in failed_names}

	def copy_dead_letters(self, rows: Sequence[Any]) -> bool:
		"""Dead rows whose dead-letter copy is pending (capture failures, earlier misses)."""
		copies = self._send_dead_letters(
			[(r, r["attempts"] or 0, r["last_error"] or "", False) for r in rows]
		)
		now = self.clock.now()
		with self._transaction():
			outbox.mark_dead_lettered(self.db, list(copies.values()), now)
			outbox.release_leases(self.db, self.owner, [r["name"] for r in rows if r["name"] not in copies])
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
