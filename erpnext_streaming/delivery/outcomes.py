"""What became of a started batch, per bundle: the events delivered, the company left waiting
for a retry, or the events that go Dead (docs/architecture.md, "Order per company").

A bundle is tried as a whole: an undelivered retriable event stops its company, and the
company's later bundles of the batch are sent again with it (at least once); an event that
can never be delivered, or whose bundle ran out of attempts, goes Dead on its own. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery.bundles import Claimed
from erpnext_streaming.delivery.policy import Classified, RetryPolicy, classify
from erpnext_streaming.delivery.producer import Delivery
from erpnext_streaming.delivery.publisher import SIZE_ERRORS, Started
from erpnext_streaming.delivery.state import Outcome, next_state
from erpnext_streaming.outbox.records import Published, Unsent

# an event not delivered: (Event Log name, its verdict, refused for its size)
Undelivered = tuple[Any, Classified, bool]
# an event that goes Dead: (Event Log name, attempts, reason, refused for its size)
Dying = tuple[Any, int, str, bool]


@dataclass(frozen=True)
class InFlight:
	"""A started batch: its bundles, each bundle's events (Event Log names, in order), the
	events that failed before producing (`outcome`), and the producer's handle (or the
	result when no producer could be made)."""

	bundles: Sequence[Claimed]
	events: Sequence[Sequence[int]]
	outcome: dict[Any, Classified]
	sending: Started | None


class Retry(NamedTuple):
	"""A company left waiting: its next bundle's attempts, in how many seconds it is due,
	and why. Its retry time, on its cursor and its Failed rows, is the database's UTC now
	plus `delay` (the drainer's record, `mariadb.utc_now`)."""

	attempts: int
	delay: float
	reason: str


@dataclass
class BatchOutcome:
	sent: list[Published] = field(default_factory=list)
	through: dict[str, int] = field(default_factory=dict)  # cursor: its last bundle done
	waiting: dict[str, Retry] = field(default_factory=dict)  # cursor: its retry
	failed: list[Unsent] = field(default_factory=list)  # the waiting companies' undelivered events
	dying: list[Dying] = field(default_factory=list)

	def unsent(self, copies: dict[Any, Published]) -> list[Unsent]:
		"""The Failed events, then the Dead ones with their dead-letter copies (`copies`)."""
		return self.failed + [
			Unsent(name, Status.DEAD, attempts, reason, dead_letter=copies.get(name))
			for name, attempts, reason, _ in self.dying
		]


def decide(
	in_flight: InFlight,
	deliveries: dict[Any, Delivery],
	policy: RetryPolicy,
	rand: Callable[[], float],
	redact: Callable[[str], str],
) -> BatchOutcome:
	"""The outcome of each bundle of `in_flight`, in name order, from its delivery reports
	(`deliveries`). The verdicts of undelivered events are added to `in_flight.outcome`; a
	waiting company's Failed events get their retry time when it is recorded."""
	batch = BatchOutcome()
	for bundle, refs in zip(in_flight.bundles, in_flight.events, strict=True):
		if bundle.cursor in batch.waiting:
			continue  # after its company's failed bundle: sent again with it
		done, undelivered = _reports(refs, in_flight.outcome, deliveries)
		retriable = [u for u in undelivered if u[1].outcome in (Outcome.RETRIABLE, Outcome.HELD)]
		held = any(u[1].outcome is Outcome.HELD for u in undelivered)
		kind = Outcome.HELD if held else Outcome.RETRIABLE
		transition = next_state(Status.QUEUED, kind, bundle.attempts, policy.max_attempts)
		if retriable and transition.status == Status.FAILED:
			retry = _retry(retriable, transition.attempts, policy, rand, redact)
			batch.waiting[bundle.cursor] = retry
			batch.failed += [
				Unsent(ref, Status.FAILED, retry.attempts, redact(verdict.reason))
				for ref, verdict, _ in undelivered
			]
			continue
		batch.sent += done
		batch.through[bundle.cursor] = bundle.name
		batch.dying += _dying(bundle, undelivered, policy.max_attempts, redact)
	return batch


def _reports(
	refs: Sequence[Any], outcome: dict[Any, Classified], deliveries: dict[Any, Delivery]
) -> tuple[list[Published], list[Undelivered]]:
	"""A bundle's events split into delivered (with partition and offset) and undelivered
	(with the verdict on their error, or on why they were never produced)."""
	done: list[Published] = []
	undelivered: list[Undelivered] = []
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
	return done, undelivered


def _retry(
	retriable: Sequence[Undelivered],
	attempts: int,
	policy: RetryPolicy,
	rand: Callable[[], float],
	redact: Callable[[str], str],
) -> Retry:
	"""When a company whose bundle failed (retriable) is tried again: after the policy's
	backoff, or at once the first time when every failure was its producer's (e.g. fenced
	when the broker came back): the next batch has a new producer."""
	delay = policy.delay(attempts, rand)
	if attempts == 1 and all(verdict.fatal for _, verdict, _ in retriable):
		delay = 0.0
	return Retry(attempts, delay, redact(retriable[0][1].reason))


def _dying(
	bundle: Claimed, undelivered: Sequence[Undelivered], max_attempts: int, redact: Callable[[str], str]
) -> list[Dying]:
	"""The undelivered events of a bundle its company moves past: Dead, with their reason."""
	dying: list[Dying] = []
	for ref, verdict, too_large in undelivered:
		attempts = next_state(Status.QUEUED, verdict.outcome, bundle.attempts, max_attempts).attempts
		reason = redact(verdict.reason)
		if verdict.outcome is Outcome.RETRIABLE:
			reason = f"gave up after {attempts} attempts: {reason}"
		dying.append((ref, attempts, reason, too_large))
	return dying
