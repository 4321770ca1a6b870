"""The Streaming Event Log state machine, as data (docs/architecture.md, "State machine").

`attempts` counts failed attempts. Sent is final; Dead is final until a requeue. Held is what
only an admin of the cluster can fix (a missing ACL, a topic to create): never Dead, so the
company waits in order and health says why.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from erpnext_streaming.constants import Status


class Outcome(enum.Enum):
	"""What happened to one row's delivery attempt (or an operator's action)."""

	DELIVERED = "delivered"
	RETRIABLE = "retriable"  # broker unavailable, timeouts, KafkaError.retriable(), fatal producer
	HELD = "held"  # the cluster refuses until an admin acts: authorization, a missing topic
	PERMANENT = "permanent"  # poison: too large, invalid topic name, unencodable
	REQUEUE = "requeue"


class Target(enum.Enum):
	SENT = "sent"
	RETRY = "retry"  # Failed while attempts are left, else Dead
	HOLD = "hold"  # Failed, whatever the attempts
	DEAD = "dead"
	QUEUED = "queued"


# (current status, outcome) -> target. Anything not listed is an invalid transition.
TRANSITIONS = MappingProxyType(
	{
		(Status.QUEUED, Outcome.DELIVERED): Target.SENT,
		(Status.FAILED, Outcome.DELIVERED): Target.SENT,
		(Status.QUEUED, Outcome.RETRIABLE): Target.RETRY,
		(Status.FAILED, Outcome.RETRIABLE): Target.RETRY,
		(Status.QUEUED, Outcome.HELD): Target.HOLD,
		(Status.FAILED, Outcome.HELD): Target.HOLD,
		(Status.QUEUED, Outcome.PERMANENT): Target.DEAD,
		(Status.FAILED, Outcome.PERMANENT): Target.DEAD,
		(Status.FAILED, Outcome.REQUEUE): Target.QUEUED,
		(Status.DEAD, Outcome.REQUEUE): Target.QUEUED,
	}
)


class InvalidTransition(ValueError):
	pass


@dataclass(frozen=True, slots=True)
class Transition:
	status: str
	attempts: int


def next_state(status: str, outcome: Outcome, attempts: int, max_attempts: int) -> Transition:
	"""The row's next status and attempt count."""
	target = TRANSITIONS.get((status, outcome))
	if target is None:
		raise InvalidTransition(f"{status} cannot go anywhere on {outcome.value}")
	if target is Target.SENT:
		return Transition(Status.SENT, attempts)
	if target is Target.QUEUED:
		return Transition(Status.QUEUED, 0)
	attempts += 1
	if target is Target.HOLD:
		return Transition(Status.FAILED, attempts)
	if target is Target.DEAD or attempts >= max_attempts:
		return Transition(Status.DEAD, attempts)
	return Transition(Status.FAILED, attempts)
