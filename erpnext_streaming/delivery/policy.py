"""Retry policy (exponential backoff with jitter, capped) and Kafka error classification
(docs/architecture.md, "Retry policy and error classification", lists the codes and why).

Unknown codes are RETRIABLE: a wrong retry costs a few delayed attempts and ends Dead, a
wrong kill would skip an event past its company's order. librdkafka does not set
`retriable()` on delivery-report errors, so the explicit code lists below decide. A refused
connection (SASL, TLS) reaches only the error callback while the messages time out, so the
producer blames the timeout on it (`refusal`, `blame`).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import KafkaError

from erpnext_streaming.delivery.state import Outcome

_MAX_EXPONENT = 62  # 2**62 seconds is far beyond any cap; avoids float overflow


@dataclass(frozen=True)
class RetryPolicy:
	"""Delay before attempt n+1 after n failed attempts: `min(cap, base * 2**(n-1))`,
	scaled by a random factor in [1 - jitter, 1] so retries of many rows spread out."""

	base_seconds: float
	cap_seconds: float
	max_attempts: int
	jitter: float = 0.5

	def __post_init__(self):
		if self.base_seconds <= 0 or self.cap_seconds < self.base_seconds:
			raise ValueError("backoff needs 0 < base <= cap")
		if self.max_attempts < 1:
			raise ValueError("max_attempts must be at least 1")
		if not 0 <= self.jitter <= 1:
			raise ValueError("jitter is a fraction between 0 and 1")

	def ceiling(self, attempts: int) -> float:
		"""The delay before jitter, after `attempts` (>= 1) failed attempts."""
		exponent = min(max(attempts, 1) - 1, _MAX_EXPONENT)
		return min(self.cap_seconds, self.base_seconds * 2.0**exponent)

	def delay(self, attempts: int, rand: Callable[[], float] = random.random) -> float:
		return self.ceiling(attempts) * (1.0 - self.jitter * rand())


# Poison: the same message can never succeed (Dead at once).
PERMANENT_CODES = frozenset(
	{
		KafkaError.MSG_SIZE_TOO_LARGE,
		KafkaError.RECORD_LIST_TOO_LARGE,
		KafkaError.INVALID_MSG_SIZE,
		KafkaError.INVALID_RECORD,
		KafkaError.TOPIC_EXCEPTION,  # invalid topic name
		KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
		KafkaError.UNSUPPORTED_FOR_MESSAGE_FORMAT,
		KafkaError.POLICY_VIOLATION,
		KafkaError._INVALID_ARG,
		KafkaError._KEY_SERIALIZATION,
		KafkaError._VALUE_SERIALIZATION,
		KafkaError._BAD_MSG,
	}
)
# Transient: the broker or the network will recover (Failed, retried after backoff).
RETRIABLE_CODES = frozenset(
	{
		KafkaError._MSG_TIMED_OUT,
		KafkaError._TIMED_OUT,
		KafkaError._TIMED_OUT_QUEUE,
		KafkaError._TRANSPORT,
		KafkaError._ALL_BROKERS_DOWN,
		KafkaError._QUEUE_FULL,
		KafkaError._RESOLVE,
		KafkaError._FAIL,
		KafkaError._UNKNOWN_PARTITION,
		KafkaError._PURGE_QUEUE,
		KafkaError._PURGE_INFLIGHT,
		KafkaError._DESTROY,
		KafkaError.REQUEST_TIMED_OUT,
		KafkaError.NETWORK_EXCEPTION,
		KafkaError.LEADER_NOT_AVAILABLE,
		KafkaError.NOT_LEADER_FOR_PARTITION,
		KafkaError.NOT_ENOUGH_REPLICAS,
		KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
		KafkaError.KAFKA_STORAGE_ERROR,
		KafkaError.THROTTLING_QUOTA_EXCEEDED,
	}
)
# Fixed on the cluster by an admin: the company is held (retried with backoff, never Dead).
HELD_CODES = frozenset(
	{
		KafkaError.TOPIC_AUTHORIZATION_FAILED,
		KafkaError.CLUSTER_AUTHORIZATION_FAILED,
		KafkaError.UNKNOWN_TOPIC_OR_PART,
		KafkaError._UNKNOWN_TOPIC,
	}
)
# The broker refuses the connection itself (credentials or TLS): held, and the producer is
# replaced so the next attempt reads the settings again.
REFUSED_CODES = frozenset(
	{KafkaError._AUTHENTICATION, KafkaError._SSL, KafkaError.SASL_AUTHENTICATION_FAILED}
)
HELD_CODES = HELD_CODES | REFUSED_CODES
# the topic of the message is named in the reason (producer.py), so health names it too
TOPIC_CODES = frozenset(
	{KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC}
)
HELD_PREFIX = "held until fixed on the cluster: "
_HINTS = {
	KafkaError.UNKNOWN_TOPIC_OR_PART: "create the topic (bench --site SITE streaming create-topics)",
	KafkaError._UNKNOWN_TOPIC: "create the topic (bench --site SITE streaming create-topics)",
	KafkaError.TOPIC_AUTHORIZATION_FAILED: "grant this client Write and Describe on the topic",
	KafkaError._AUTHENTICATION: "check SASL Username / Password in Streaming Settings and the user on the cluster",
	KafkaError.SASL_AUTHENTICATION_FAILED: "check SASL Username / Password in Streaming Settings",
	KafkaError._SSL: "check the broker certificate (Test connection says why) and the TLS fields of Streaming Settings",
}
# a TLS alert the broker sent back (e.g. `ssl/tls alert bad certificate`: no or an untrusted
# client certificate): librdkafka reports it as a transport error
_TLS_ALERT = "ssl/tls alert"
_TIMEOUTS = frozenset({KafkaError._MSG_TIMED_OUT, KafkaError._TIMED_OUT})
# The producer instance's idempotence state is broken: retry with a new producer.
PRODUCER_STATE_CODES = frozenset(
	{
		KafkaError.PRODUCER_FENCED,
		KafkaError.INVALID_PRODUCER_EPOCH,
		KafkaError.UNKNOWN_PRODUCER_ID,
		KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER,
		KafkaError.INVALID_PRODUCER_ID_MAPPING,
		KafkaError._INCONSISTENT,
		KafkaError._FATAL,
	}
)


@dataclass(frozen=True, slots=True)
class Classified:
	outcome: Outcome
	fatal: bool  # the producer instance must be replaced
	reason: str  # for last_error and dead-letter headers; never contains configuration


def describe(error: KafkaError) -> str:
	"""`MSG_SIZE_TOO_LARGE: Broker: Message size too large` (name and librdkafka's text)."""
	try:
		return f"{error.name()}: {error.str()}"
	except Exception:
		return repr(error)


def classify(error: KafkaError) -> Classified:
	reason = describe(error)
	if error.fatal():
		return Classified(
			Outcome.RETRIABLE, True, f"fatal producer error, retried with a new producer: {reason}"
		)
	if error.code() in PRODUCER_STATE_CODES:
		return Classified(
			Outcome.RETRIABLE, True, f"producer state lost, retried with a new producer: {reason}"
		)
	if error.code() in HELD_CODES:
		hint = _HINTS.get(error.code())
		reason = f"{HELD_PREFIX}{reason}" + (f" ({hint})" if hint else "")
		return Classified(Outcome.HELD, error.code() in REFUSED_CODES, reason)
	if error.code() in PERMANENT_CODES:
		return Classified(Outcome.PERMANENT, False, reason)
	if error.retriable() or error.code() in RETRIABLE_CODES:
		return Classified(Outcome.RETRIABLE, False, reason)
	return Classified(Outcome.RETRIABLE, False, f"unclassified, retried: {reason}")


def refusal(error: KafkaError) -> KafkaError | None:
	"""An error of librdkafka's error callback that says the broker refuses this client's
	connection (as a REFUSED_CODES error), or None."""
	if error.code() in REFUSED_CODES:
		return error
	if error.code() == KafkaError._TRANSPORT and _TLS_ALERT in error.str():
		return KafkaError(KafkaError._SSL, error.str())
	return None


def blame(error: KafkaError, refused: KafkaError | None) -> KafkaError:
	"""A message that timed out while the broker refused the connection failed for that."""
	if refused is None or error.code() not in _TIMEOUTS:
		return error
	return KafkaError(refused.code(), f"{refused.str()} (the message timed out)")


def unreadable(bundle: object, error: Exception) -> Classified:
	"""An event of a delivery bundle that cannot be read (damaged): it cannot be sent from
	there; its Event Log row still holds it (dead-letter copy, requeue)."""
	return Classified(
		Outcome.PERMANENT, False, f"unreadable bundle {bundle}: {type(error).__name__}: {error}"
	)


def unencodable(error: Exception) -> Classified:
	"""A row that cannot become a Kafka message (bad payload, headers): poison."""
	return Classified(Outcome.PERMANENT, False, f"unencodable: {type(error).__name__}: {error}")
