"""Large events in parts, without a broker: splitting (delivery/parts.py), the publisher
folding part reports into one per event, the topic limits, and the consumer kit's
reassembly (consumer/parts.py)."""

from __future__ import annotations

import hashlib
import logging
import random

import pytest
from confluent_kafka import KafkaError

from erpnext_streaming.consumer import DecodeError, Decoder, PartsError, Reassembler
from erpnext_streaming.delivery import parts
from erpnext_streaming.delivery.environment import DrainStats
from erpnext_streaming.delivery.limits import TopicLimits
from erpnext_streaming.delivery.producer import BatchResult, Delivery, OutgoingMessage, Sending
from erpnext_streaming.delivery.publisher import Publisher

LOG = logging.getLogger("test.parts")
OWN = {"ce_id": "e-1", "ce_type": "io.erpnext.streaming.sales-invoice.submitted", "es_company_sequence": "7"}


def big(size: int, ref="r1", topic="t", headers=None) -> OutgoingMessage:
	value = random.Random(size).randbytes(size)
	return OutgoingMessage(ref, topic, b"Acme Corp", value, dict(headers or OWN))


def as_consumed(message: OutgoingMessage) -> list[tuple[str, bytes]]:
	"""Headers as a consumer reads them: pairs of (str, bytes)."""
	return [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in message.headers]


def test_an_event_over_the_limit_is_split_in_order_with_the_header_contract():
	message = big(2_500_000)
	pieces = parts.split(message, 1_000_000)
	size = 1_000_000 - parts.HEADROOM
	assert [len(p.value) for p in pieces] == [size, size, 2_500_000 - 2 * size]
	assert b"".join(p.value for p in pieces) == message.value
	assert [p.ref for p in pieces] == [parts.Part("r1", i, 3) for i in (1, 2, 3)]
	assert {(p.topic, p.key) for p in pieces} == {("t", b"Acme Corp")}  # same key: same partition
	checksum = hashlib.sha256(message.value).hexdigest()
	for i, piece in enumerate(pieces, 1):
		assert dict(piece.headers) == {
			**OWN,
			"es_part": f"{i}/3",
			"es_parts_checksum": checksum,
			"es_part_of": "e-1",
		}
	print(f"\n2,500,000 bytes at a 1,000,000-byte limit: {len(pieces)} parts of at most {size} bytes")


def test_an_event_within_the_limit_is_not_split_and_one_needing_too_many_parts_is_refused():
	assert not parts.needs_parts(big(1_000_000 - parts.HEADROOM), 1_000_000)
	assert parts.needs_parts(big(1_000_000 - parts.HEADROOM + 1), 1_000_000)
	with pytest.raises(parts.Unsplittable, match="more than 100"):
		parts.split(big(101 * 10_000), 20_000)  # 20,000 - 16 KiB < half: 10,000-byte parts
	assert len(parts.split(big(100 * 10_000), 20_000)) == 100


def test_part_reports_fold_into_one_per_event():
	first, second = parts.Part("r", 1, 2), parts.Part("r", 2, 2)
	ok = {
		first: Delivery(first, None, 4, 10),
		second: Delivery(second, None, 4, 11),
		"o": Delivery("o", None, 1, 3),
	}
	assert parts.merge(ok) == {"r": Delivery("r", None, 4, 10), "o": Delivery("o", None, 1, 3)}
	timeout = KafkaError(KafkaError._MSG_TIMED_OUT)
	failed = {**ok, second: Delivery(second, timeout)}
	assert parts.merge(failed)["r"] == Delivery("r", timeout)  # any part failed: the event failed
	missing = {first: ok[first]}
	assert parts.merge(missing)["r"].error.code() == KafkaError._FAIL


class FakeProducer:
	"""Records what it is handed; every message delivered at the next offset of partition 0."""

	def __init__(self, own_limit=1_000_000, topic_limits=None, fail=()):
		self.message_max_bytes = own_limit
		self.topic_limits = topic_limits or {}
		self.fail = set(fail)
		self.batches: list[list[OutgoingMessage]] = []
		self.capped: list[int] = []
		self.described: list[str] = []

	def topic_max_bytes(self, topic):
		self.described.append(topic)
		if self.topic_limits.get(topic) == "refused":
			raise RuntimeError("TOPIC_AUTHORIZATION_FAILED")
		return self.topic_limits.get(topic)

	def cap_batches(self, max_bytes, timeout):
		self.capped.append(max_bytes)
		return True

	def start(self, messages, timeout):
		self.batches.append(list(messages))
		return Sending(messages, {}, 0.0, timeout)

	def finish(self, sending):
		deliveries = {}
		for offset, m in enumerate(sending.messages):
			error = KafkaError(KafkaError._MSG_TIMED_OUT) if m.ref in self.fail else None
			deliveries[m.ref] = Delivery(m.ref, error, None if error else 0, None if error else offset)
		return BatchResult(deliveries)

	def send(self, messages, timeout):
		return self.finish(self.start(messages, timeout))

	def close(self, timeout):
		pass


def test_the_publisher_sends_parts_and_reports_events_learning_each_topics_limit_once():
	producer = FakeProducer(topic_limits={"small": 200_000, "refused": "refused"})
	stats = DrainStats()
	publisher = Publisher(lambda: producer, stats, LOG)
	outgoing = [
		OutgoingMessage("a", "small", b"k", b"tiny", {"ce_id": "a"}),
		big(1_000_000, "b", "small", {"ce_id": "b"}),  # 6 parts of 183,616 bytes
		big(900_000, "c", "refused", {"ce_id": "c"}),  # the producer's own limit: whole
		big(20_000_000, "d", "default", {"ce_id": "d"}),  # 21 parts
	]
	result = publisher.finish(publisher.start(outgoing, 5))
	(sent,) = producer.batches
	assert [getattr(m.ref, "ref", m.ref) for m in sent] == ["a", *"b" * 6, "c", *"d" * 21]
	assert set(result.deliveries) == {"a", "b", "c", "d"}
	assert result.deliveries["b"] == Delivery("b", None, 0, 1)  # where its first part is
	assert result.deliveries["c"] == Delivery("c", None, 0, 7)
	assert (stats.split_events, stats.parts) == (2, 27)
	assert producer.capped == [200_000]  # record batches no larger than the smallest limit
	publisher.finish(publisher.start(outgoing[:2], 5))
	assert sorted(producer.described) == ["default", "refused", "small"]  # once per topic per run
	assert publisher.limits.known == {"small": 200_000, "refused": 1_000_000, "default": 1_000_000}


def test_an_unsplittable_event_is_refused_as_too_large_and_a_failed_part_fails_its_event():
	producer = FakeProducer(own_limit=20_000, fail={parts.Part("f", 2, 3)})
	publisher = Publisher(lambda: producer, DrainStats(), LOG)
	outgoing = [big(2_000_000, "huge", headers={"ce_id": "huge"}), big(25_000, "f", headers={"ce_id": "f"})]
	result = publisher.finish(publisher.start(outgoing, 5))
	huge = result.deliveries["huge"].error
	assert huge.code() == KafkaError.MSG_SIZE_TOO_LARGE and "more than 100" in huge.str()
	assert result.deliveries["f"].error.code() == KafkaError._MSG_TIMED_OUT
	assert [m.ref for m in producer.batches[0]] == [parts.Part("f", i, 3) for i in (1, 2, 3)]


def test_dead_letter_copies_are_never_split():
	producer = FakeProducer(own_limit=20_000)
	publisher = Publisher(lambda: producer, DrainStats(), LOG)
	result = publisher.send([big(50_000, "x")], 5)
	assert [m.ref for m in producer.batches[0]] == ["x"] and result.deliveries["x"].error is None


def test_topic_limits_fall_back_to_the_producers_own_without_a_describe():
	limits = TopicLimits(LOG)
	assert limits.limit(object(), "t") == parts.DEFAULT_LIMIT
	assert limits.limit(FakeProducer(own_limit=300_000, topic_limits={"t": 1_048_588}), "u") == 300_000


# -- the consumer kit ------------------------------------------------------------------


def consumed_parts(size=2_500_000, limit=1_000_000, event_id="e-1"):
	message = big(size, headers={**OWN, "ce_id": event_id})
	return message, [as_consumed(p) for p in parts.split(message, limit)], parts.split(message, limit)


def test_the_reassembler_gives_the_whole_value_once_every_part_is_in():
	message, headers, pieces = consumed_parts()
	kit = Reassembler()
	results = [
		kit.push(p.value, h, "t", 2, 100 + i) for i, (p, h) in enumerate(zip(pieces, headers, strict=True))
	]
	assert results[:-1] == [None, None]
	whole = results[-1]
	assert whole.value == message.value and whole.parts == 3
	assert (whole.topic, whole.partition, whole.offset) == ("t", 2, 100)  # the first part's offset
	assert whole.headers == OWN  # the event's own headers, without the part headers
	assert kit.pending() == 0 and kit.holding("t", 2) is None


def test_duplicate_parts_are_ignored_and_sets_of_two_events_interleave():
	one, h1, p1 = consumed_parts(event_id="e-1")
	two, h2, p2 = consumed_parts(size=1_500_000, event_id="e-2")
	kit = Reassembler()
	order = [(p1[0], h1[0]), (p2[0], h2[0]), (p1[0], h1[0]), (p1[1], h1[1]), (p2[1], h2[1]), (p1[1], h1[1])]
	results = [kit.push(p.value, h, "t", 0, i) for i, (p, h) in enumerate(order)]
	assert results[:4] == [None] * 4 and results[5] is None
	assert results[4].value == two.value and results[4].offset == 1  # e-2 (2 parts) is complete
	assert kit.stats["duplicate_parts"] == 2 and kit.pending() == 1 and kit.holding("t", 0) == 0
	whole = kit.push(p1[2].value, h1[2], "t", 0, 9)
	assert whole.value == one.value and kit.pending() == 0


def test_a_set_that_does_not_check_is_refused():
	_, headers, pieces = consumed_parts()
	kit = Reassembler()
	kit.push(pieces[0].value, headers[0], "t", 0, 0)
	kit.push(pieces[1].value[:-1] + b"?", headers[1], "t", 0, 1)
	with pytest.raises(PartsError, match="do not match es_parts_checksum"):
		kit.push(pieces[2].value, headers[2], "t", 0, 2)
	assert kit.pending() == 0 and kit.stats["refused"] == 1
	with pytest.raises(PartsError, match="not i/n"):
		kit.push(b"x", [("es_part", b"4/3"), ("es_part_of", b"e"), ("es_parts_checksum", b"0" * 64)])
	assert issubclass(PartsError, DecodeError)  # the kit counts it as a message it cannot decode


def test_ordinary_messages_pass_through_unchanged_and_a_lone_part_is_not_decoded():
	kit = Reassembler()
	value, headers = b"\x48abc", [("ce_id", b"x")]
	whole = kit.push(value, headers, "t", 1, 2)
	assert whole.value is value and whole.headers is headers and (whole.partition, whole.offset) == (1, 2)
	assert whole.parts == 0
	_, part_headers, pieces = consumed_parts()
	with pytest.raises(DecodeError, match="reassemble the parts first"):
		Decoder().decode(pieces[0].value, part_headers[0])


def test_sets_that_never_complete_are_forgotten_oldest_first():
	kit = Reassembler(max_events=2)
	for n in range(3):
		_, headers, pieces = consumed_parts(size=1_100_000, event_id=f"e-{n}")
		kit.push(pieces[0].value, headers[0], "t", 0, n)
	assert kit.pending() == 2 and kit.stats["evicted"] == 1 and kit.holding("t", 0) == 1
