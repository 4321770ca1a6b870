"""The drainer: one long-running loop per site that publishes the delivery queue in order
(docs/architecture.md, "Design: one drainer per site, in slices", has its round step by step).

It holds ONE producer for its whole run because a new idempotent producer is slow to deliver
its first message. Each round claims the next batch, finishes the previous one (delivery
reports, outcomes, one receipt and the cursor moves in one transaction), copies pending dead
letters and starts the claimed batch without waiting, so acknowledgements arrive while the
next round claims. Everything it touches comes in through the constructor (`environment`),
so it runs the same in an RQ job (delivery/jobs.py), in the sandbox and in a test.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import bundles, messages
from erpnext_streaming.delivery.bundles import Claimed
from erpnext_streaming.delivery.environment import (
	DrainerConfig,
	DrainStats,
	NoHeartbeat,
	SystemClock,
	new_owner,
)
from erpnext_streaming.delivery.framing import Framer
from erpnext_streaming.delivery.outcomes import BatchOutcome, Dying, InFlight, decide
from erpnext_streaming.delivery.policy import Classified, RetryPolicy, unreadable
from erpnext_streaming.delivery.producer import KafkaProducer, OutgoingMessage
from erpnext_streaming.delivery.publisher import DeadLetter, Publisher
from erpnext_streaming.delivery.signals import RedisHeartbeat, RedisWake
from erpnext_streaming.outbox import mariadb
from erpnext_streaming.outbox.outcomes import (
	claim_dead_letters,
	delivery_rows,
	mark_dead_lettered,
	mark_unsent,
	release_leases,
)
from erpnext_streaming.outbox.records import Lease, Published, Unsent

# a claimed batch whose start waited longer than this (the previous batch's outage) is
# leased again for a full lease before it is produced
RENEW_AFTER_SECONDS = 5.0
# a claim or record rolled back as a deadlock's victim is run again, at most this often in all
ATTEMPTS = 3
# at most this many settle rounds (`bundles.SETTLE_RECEIPTS` receipts each) before leaving
LEAVE_SETTLE_ROUNDS = 50

T = TypeVar("T")


class Drainer:
	def __init__(
		self,
		db: mariadb.TransactionalDatabase,
		producer_factory: Callable[[], KafkaProducer],
		wake: RedisWake,
		clock: SystemClock,
		config: DrainerConfig,
		policy: RetryPolicy,
		heartbeat: RedisHeartbeat | NoHeartbeat | None = None,
		secrets: Sequence[str] = (),
		log: logging.Logger | None = None,
		owner: str | None = None,
		framer: Framer | None = None,
		stop: Callable[[], str | None] = lambda: None,
	):
		self.db = db
		self.wake = wake
		self.clock = clock
		self.config = config
		self.policy = policy
		self.heartbeat = heartbeat or NoHeartbeat()
		self.log = log or logging.getLogger("erpnext_streaming.drainer")
		self.owner = owner or new_owner()
		self.framer = framer  # None: schemaless and single-object only (no registry)
		self.stop = stop  # why to stop at this batch boundary (delivery/lifecycle.py), or None
		self.time_zone = ZoneInfo(config.time_zone or "UTC")
		self.stats = DrainStats()
		self.publisher = Publisher(producer_factory, self.stats, self.log, secrets)
		self._in_flight: InFlight | None = None
		# per cursor, the last bundle this drainer started: the next claim continues there
		# (the cursor itself moves only when the batch is recorded)
		self._claimed_through: dict[str, int] = {}
		self._lock: str | None = None
		self._dead_letters_retry_at = 0.0
		# when to settle under sustained load: armed by the first receipt after a settle
		self._settle_at: float | None = None

	# -- the loop ---------------------------------------------------------------------

	def run(self) -> DrainStats:
		config = self.config
		self.prepare()
		if not self.heartbeat.acquire():
			self.heartbeat.close()
			self.stats.exit_reason = "another drainer is running"
			return self.stats
		started = self.clock.monotonic()
		idle_since: float | None = None
		try:
			while True:
				if (
					reason := config.used_up(self.clock.monotonic() - started, self.stats.batches)
					or self.stop()
				):
					self.finish_in_flight()
					self.stats.exit_reason = reason
					break
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
				self._leave_quietly()
				self.heartbeat.close()
				self.publisher.close(self.config.flush_timeout_seconds)
		return self.stats

	def prepare(self) -> None:
		"""READ COMMITTED for this connection (no gap locks; see outbox), and the lock name."""
		mariadb.use_read_committed(self.db)
		self.db.commit()
		self._lock = mariadb.lock_name(self.db, "claim")

	def _last_look(self) -> bool:
		"""Before leaving: give up the heartbeat first (a commit from now on enqueues a new
		drainer), then look once more, so a commit just before is not left waiting."""
		self.heartbeat.release()
		self.wake.clear()
		if self.cycle() or (self.wake.pending() and self.cycle()):
			return self.heartbeat.acquire()
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
		if due is not None:  # UTC: against the database's clock, not this host's
			wait = min(wait, max((due - mariadb.utc_now(self.db)).total_seconds(), 0.0) + 0.05)
		self.db.commit()
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
		with self._transaction():
			settled = bundles.settle(self.db, self.clock.now())
		self._settle_at = self.clock.monotonic() + bundles.SETTLE_AFTER_SECONDS if settled else None
		return settled > 0

	def _claim(
		self, dead_letters: bool, after: dict[str, int] | None = None
	) -> tuple[list[Claimed], list[Any]]:
		"""Claim a batch and, if `dead_letters`, the Dead rows whose copy is pending: under
		one hold of the claim lock, in one transaction (run again if it lost a deadlock)."""
		db = self.db
		if not mariadb.get_lock(db, self._lock, self.config.claim_lock_timeout_seconds):
			db.commit()
			return [], []
		try:
			return self._retried(lambda: self._claim_once(dead_letters, after))
		finally:
			mariadb.release_lock(db, self._lock)

	@staticmethod
	def _retried(transaction: Callable[[], T]) -> T:
		"""Run `transaction` (it rolls itself back on an error) again while MariaDB rolls it
		back as a deadlock's victim, `ATTEMPTS` times in all. Others write the same cursor
		rows in their own order: a requeue (its Event Log rows, then its companies' cursors,
		leased or not), the sweeper and another drainer (on an expired lease), in the
		collation's order, which `bundles._cursor_order` only comes near; and a claim or a
		failed batch's record writes cursors first, then Event Log rows."""
		for _ in range(ATTEMPTS - 1):
			try:
				return transaction()
			except Exception as e:
				if not mariadb.is_mariadb_error(e, mariadb.ER_LOCK_DEADLOCK):
					raise
		return transaction()

	def _claim_once(
		self, dead_letters: bool, after: dict[str, int] | None
	) -> tuple[list[Claimed], list[Any]]:
		db = self.db
		with self._transaction():
			now, utc, lease = self.clock.now(), mariadb.utc_now(db), timedelta(seconds=self.config.lease)
			claimed = bundles.claim(db, self.owner, utc + lease, utc, self.config.batch_size, after, now)
			dead = (
				claim_dead_letters(db, Lease(self.owner, utc + lease), utc, self.config.batch_size)
				if dead_letters
				else []
			)
		return claimed, dead

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
		with self._transaction():
			until = mariadb.utc_now(self.db) + timedelta(seconds=self.config.lease)
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

	def finish_in_flight(self) -> None:
		"""Finish the batch in flight, if any (before leaving)."""
		in_flight, self._in_flight = self._in_flight, None
		if in_flight is not None:
			self.finish(in_flight)

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
		sending = self.publisher.start(outgoing, self.config.flush_timeout_seconds) if outgoing else None
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
		"""Wait for the batch's delivery reports and record its outcome (`outcomes.decide`),
		the Dead events with their dead-letter copies; the cursors left waiting for a retry."""
		deliveries = (
			self.publisher.finish(in_flight.sending).deliveries if in_flight.sending is not None else {}
		)
		batch = decide(in_flight, deliveries, self.policy, random.random, self.publisher.redact)
		for cursor in batch.waiting:
			self._claimed_through.pop(cursor, None)  # claimed again from its cursor
		if any(v.fatal for v in in_flight.outcome.values()) and self.publisher.producer is not None:
			self.log.warning(
				"erpnext_streaming: the producer is replaced after: %s",
				next(v.reason for v in in_flight.outcome.values() if v.fatal),
			)
			self.publisher.close(0)
		copies = self._send_dead_letters(self._dying_rows(batch.dying)) if batch.dying else {}
		self._record(in_flight, batch, batch.unsent(copies))
		self._count(in_flight, batch, len(copies))
		return set(batch.waiting)

	def _record(self, in_flight: InFlight, batch: BatchOutcome, unsent: list[Unsent]) -> None:
		"""The batch's outcome in one transaction (run again if it lost a deadlock)."""
		now = self.clock.now()
		if batch.sent and self._settle_at is None:
			self._settle_at = self.clock.monotonic() + bundles.SETTLE_AFTER_SECONDS

		def record() -> None:
			with self._transaction():
				bundles.record_delivered(self.db, batch.sent, batch.through, now)
				if unsent or batch.waiting:
					self._record_undelivered(in_flight, batch, unsent, now)

		self._retried(record)

	def _record_undelivered(
		self, in_flight: InFlight, batch: BatchOutcome, unsent: list[Unsent], now: datetime
	) -> None:
		"""Failed and Dead events and the retry state, only where this drainer still leases the
		company: a late drainer never overwrites the outcome of a newer owner's delivery."""
		held = bundles.still_leased(self.db, self.owner, {b.cursor for b in in_flight.bundles})
		cursor_of = {
			ref: b.cursor for b, refs in zip(in_flight.bundles, in_flight.events, strict=True) for ref in refs
		}
		utc = mariadb.utc_now(self.db) if batch.waiting else None
		# the database's clock, as every lease; the company's Failed rows show the same time
		due = {cursor: utc + timedelta(seconds=retry.delay) for cursor, retry in batch.waiting.items()}
		rows = [
			replace(u, next_attempt_at=due[cursor_of[u.name]]) if u.status == Status.FAILED else u
			for u in unsent
			if cursor_of[u.name] in held
		]
		mark_unsent(self.db, rows, now)
		for cursor, retry in batch.waiting.items():
			bundles.record_retry(self.db, self.owner, cursor, retry.attempts, due[cursor], retry.reason, now)

	def _count(self, in_flight: InFlight, batch: BatchOutcome, dead_lettered: int) -> None:
		"""The batch in the statistics and the log."""
		stats = self.stats
		stats.batches += 1
		stats.sent += len(batch.sent)
		stats.failed += len(batch.failed)
		stats.dead += len(batch.dying)
		stats.dead_lettered += dead_lettered
		if batch.failed:
			stats.failed_batches += 1
			self.log.warning(
				"erpnext_streaming: %d of %d events not delivered, retried in %.0f s: %s",
				len(batch.failed),
				sum(len(refs) for refs in in_flight.events),
				min(retry.delay for retry in batch.waiting.values()),
				batch.failed[0].last_error,
			)
		for name, _, reason, _ in batch.dying:
			self.log.warning("erpnext_streaming: Event Log %s is Dead: %s", name, reason)

	def _dying_rows(self, dying: Sequence[Dying]) -> list[DeadLetter]:
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

	def _send_dead_letters(self, dying: Sequence[DeadLetter]) -> dict[Any, Published]:
		"""Copy rows to the dead-letter topic (`Publisher.send_dead_letters`); the copies that
		arrived, by row name. After a copy that did not, pending copies wait for a backoff."""
		copies, missed = self.publisher.send_dead_letters(dying, self.config, self.time_zone)
		if missed:
			self._dead_letters_retry_at = self.clock.monotonic() + self.policy.delay(1, random.random)
		return copies
