"""Retry policy, the Event Log state machine and Kafka error classification (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from confluent_kafka import KafkaError
from hypothesis import given
from hypothesis import strategies as st

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery.policy import RetryPolicy, blame, classify, refusal, unencodable
from erpnext_streaming.delivery.state import TRANSITIONS, InvalidTransition, Outcome, next_state

POLICY = RetryPolicy(base_seconds=5, cap_seconds=3600, max_attempts=10)


# -- retry policy ---------------------------------------------------------------------


def test_backoff_ceiling_doubles_from_the_base_until_the_cap():
	assert [POLICY.ceiling(n) for n in range(1, 12)] == [
		5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]  # fmt: skip
	assert POLICY.ceiling(10_000) == 3600  # no overflow far beyond the cap


def test_jitter_spans_half_the_ceiling_to_the_ceiling():
	assert POLICY.delay(3, rand=lambda: 0.0) == 20
	assert POLICY.delay(3, rand=lambda: 0.999999) == pytest.approx(10, abs=1e-3)
	assert POLICY.delay(30, rand=lambda: 0.0) == 3600  # capped before jitter


@given(
	attempts=st.integers(min_value=1, max_value=200), r=st.floats(min_value=0, max_value=1, exclude_max=True)
)
def test_every_delay_is_within_the_jitter_bounds(attempts, r):
	ceiling = POLICY.ceiling(attempts)
	assert ceiling / 2 <= POLICY.delay(attempts, rand=lambda: r) <= ceiling <= POLICY.cap_seconds


def test_real_jitter_spreads_retries():
	delays = {round(POLICY.delay(4), 6) for _ in range(50)}
	assert len(delays) > 40 and all(20 < d <= 40 for d in delays)


@pytest.mark.parametrize(
	"kwargs",
	[
		{"base_seconds": 0, "cap_seconds": 10, "max_attempts": 3},
		{"base_seconds": 10, "cap_seconds": 5, "max_attempts": 3},
		{"base_seconds": 1, "cap_seconds": 5, "max_attempts": 0},
		{"base_seconds": 1, "cap_seconds": 5, "max_attempts": 3, "jitter": 1.5},
	],
)
def test_nonsense_policies_are_refused(kwargs):
	with pytest.raises(ValueError):
		RetryPolicy(**kwargs)


# -- state machine --------------------------------------------------------------------

Q, S, F, D = Status.QUEUED, Status.SENT, Status.FAILED, Status.DEAD
DELIVERED, RETRIABLE, HELD, PERMANENT, REQUEUE = (
	Outcome.DELIVERED,
	Outcome.RETRIABLE,
	Outcome.HELD,
	Outcome.PERMANENT,
	Outcome.REQUEUE,
)

TABLE = [
	# status, outcome, attempts before, max attempts -> status, attempts after
	(Q, DELIVERED, 0, 10, S, 0),
	(F, DELIVERED, 3, 10, S, 3),
	(Q, RETRIABLE, 0, 10, F, 1),
	(F, RETRIABLE, 1, 10, F, 2),
	(F, RETRIABLE, 8, 10, F, 9),
	(F, RETRIABLE, 9, 10, D, 10),  # the last allowed attempt failed
	(Q, RETRIABLE, 0, 1, D, 1),  # max_attempts 1: no retry at all
	(Q, HELD, 0, 10, F, 1),
	(F, HELD, 9, 10, F, 10),  # held: an admin fixes the cause; never Dead, however long
	(F, HELD, 500, 10, F, 501),
	(Q, PERMANENT, 0, 10, D, 1),
	(F, PERMANENT, 4, 10, D, 5),
	(F, REQUEUE, 7, 10, Q, 0),
	(D, REQUEUE, 10, 10, Q, 0),
]


@pytest.mark.parametrize(("status", "outcome", "before", "limit", "expected", "after"), TABLE)
def test_transition_table(status, outcome, before, limit, expected, after):
	transition = next_state(status, outcome, before, limit)
	assert (transition.status, transition.attempts) == (expected, after)


INVALID = [
	(status, outcome) for status in Status.ALL for outcome in Outcome if (status, outcome) not in TRANSITIONS
]


@pytest.mark.parametrize(("status", "outcome"), INVALID)
def test_every_other_transition_is_refused(status, outcome):
	with pytest.raises(InvalidTransition):
		next_state(status, outcome, 0, 10)


def test_the_table_covers_the_issue_and_sent_is_final():
	assert {s for s, _ in TRANSITIONS} == {Q, F, D}  # nothing leaves Sent
	assert (Q, REQUEUE) in INVALID and (S, REQUEUE) in INVALID  # only Failed/Dead are requeued
	assert {s for s, o in TRANSITIONS if o is REQUEUE} == set(Status.REQUEUEABLE)


# -- error classification -------------------------------------------------------------

CASES = [
	# (code, fatal flag, retriable flag) -> outcome, producer must go
	(KafkaError._MSG_TIMED_OUT, False, False, RETRIABLE, False),
	(KafkaError._TRANSPORT, False, False, RETRIABLE, False),
	(KafkaError._ALL_BROKERS_DOWN, False, False, RETRIABLE, False),
	(KafkaError.REQUEST_TIMED_OUT, False, False, RETRIABLE, False),
	(KafkaError.NOT_ENOUGH_REPLICAS, False, False, RETRIABLE, False),
	(KafkaError.LEADER_NOT_AVAILABLE, False, False, RETRIABLE, False),
	(KafkaError.UNKNOWN, False, True, RETRIABLE, False),  # librdkafka says retriable
	(KafkaError.MSG_SIZE_TOO_LARGE, False, False, PERMANENT, False),
	(KafkaError.RECORD_LIST_TOO_LARGE, False, False, PERMANENT, False),
	(KafkaError.TOPIC_EXCEPTION, False, False, PERMANENT, False),
	# fixed on the cluster by an admin (an ACL, a topic to create): held, never Dead
	(KafkaError.TOPIC_AUTHORIZATION_FAILED, False, False, HELD, False),
	(KafkaError.CLUSTER_AUTHORIZATION_FAILED, False, False, HELD, False),
	(KafkaError.UNKNOWN_TOPIC_OR_PART, False, False, HELD, False),
	(KafkaError._UNKNOWN_TOPIC, False, False, HELD, False),
	# the broker refuses the connection (a wrong password, an untrusted, expired or misnamed
	# certificate): held, never Dead, and the producer is replaced so the next attempt reads
	# the settings again
	(KafkaError._AUTHENTICATION, False, False, HELD, True),
	(KafkaError.SASL_AUTHENTICATION_FAILED, False, False, HELD, True),
	(KafkaError._SSL, False, False, HELD, True),
	(KafkaError._VALUE_SERIALIZATION, False, False, PERMANENT, False),
	(KafkaError._INVALID_ARG, False, False, PERMANENT, False),
	# fatal: the batch is retried with a new producer, whatever the code
	(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, True, False, RETRIABLE, True),
	(KafkaError._FATAL, False, False, RETRIABLE, True),
	(KafkaError.MSG_SIZE_TOO_LARGE, True, False, RETRIABLE, True),
	# the idempotent producer's state is broken, flagged fatal or not: new producer
	(KafkaError.PRODUCER_FENCED, False, False, RETRIABLE, True),
	(KafkaError.UNKNOWN_PRODUCER_ID, False, False, RETRIABLE, True),
	(KafkaError.INVALID_PRODUCER_EPOCH, False, False, RETRIABLE, True),
]


@pytest.mark.parametrize(("code", "fatal", "retriable", "outcome", "discard"), CASES)
def test_classification(code, fatal, retriable, outcome, discard):
	verdict = classify(KafkaError(code, "reason text", fatal=fatal, retriable=retriable))
	assert (verdict.outcome, verdict.fatal) == (outcome, discard)
	assert KafkaError(code).name() in verdict.reason and "reason text" in verdict.reason


def test_unknown_errors_are_retried_not_killed():
	verdict = classify(KafkaError(KafkaError.UNKNOWN, "odd", fatal=False, retriable=False))
	assert verdict.outcome is RETRIABLE and verdict.reason.startswith("unclassified")


def test_unencodable_rows_are_poison():
	verdict = unencodable(ValueError("Incorrect padding"))
	assert verdict.outcome is PERMANENT and "Incorrect padding" in verdict.reason


def test_held_reasons_say_what_to_do():
	assert "create-topics" in classify(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "x: topic t")).reason
	assert "SASL Username / Password" in classify(KafkaError(KafkaError._AUTHENTICATION, "x")).reason
	assert "Write and Describe" in classify(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "x")).reason


def test_a_refused_connection_is_recognised_from_the_error_callback():
	auth = KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials")
	assert refusal(auth) is auth
	alert = KafkaError(KafkaError._TRANSPORT, "Receive failed: SSL routines::ssl/tls alert bad certificate")
	assert refusal(alert).code() == KafkaError._SSL and "bad certificate" in refusal(alert).str()
	assert refusal(KafkaError(KafkaError._TRANSPORT, "Connection refused")) is None
	assert refusal(KafkaError(KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")) is None


def test_a_timeout_while_the_connection_is_refused_is_blamed_on_the_refusal():
	refused = KafkaError(KafkaError._SSL, "SSL handshake failed: certificate verify failed")
	timed_out = KafkaError(KafkaError._MSG_TIMED_OUT)
	blamed = blame(timed_out, refused)
	assert blamed.code() == KafkaError._SSL and "certificate verify failed" in blamed.str()
	assert classify(blamed).outcome is HELD
	assert blame(timed_out, None) is timed_out  # no refusal: a plain timeout, retriable
	too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
	assert blame(too_large, refused) is too_large  # only timeouts are blamed
