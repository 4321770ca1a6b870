"""Large events end to end: a 5 MB event through the outbox (MariaDB) and a drainer in a
real `rq worker` to Apache Kafka, in parts, and whole again in the consumer kit; and a
topic whose `max.message.bytes` is lowered, whose limit the drainer learns."""

from __future__ import annotations

import base64
import random
import time
from collections import Counter
from datetime import timedelta

import frappe
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from delivery_support import (
	CODEC,
	COMPANIES,
	PARTITIONS,
	all_delivered,
	by_event_id,
	commit_transaction,
	configure,
	consume,
	drainer_running,
	drainer_stats,
	event,
	new_topic,
	rows,
	wait_for,
)

from erpnext_streaming import kafka_config
from erpnext_streaming.constants import Status
from erpnext_streaming.consumer import EventConsumer, Reassembler
from erpnext_streaming.delivery import parts
from erpnext_streaming.delivery.producer import KafkaProducer, OutgoingMessage
from erpnext_streaming.settings import StreamingConfig

pytestmark = pytest.mark.integration


def filler(size: int, seed: int) -> bytes:
	"""`size` ASCII bytes that lz4 does not shrink (the broker sees real sizes)."""
	return base64.b64encode(random.Random(seed).randbytes(size * 3 // 4))[:size]


def large_backlog(topic: str, size: int) -> tuple[list, object]:
	"""Small events of three companies around one large Acme event, in four transactions."""
	small = [event(f"small-{i}", COMPANIES[i % 3], topic) for i in range(6)]
	large = event("large", "Acme Corp", topic, filler=filler(size, size))
	commit_transaction(small[:3])
	commit_transaction([large])
	commit_transaction(small[3:])
	return small, large


def reassembled(got) -> dict[str, object]:
	"""The consumer kit over what was read, in partition order: whole messages by event id."""
	kit = Reassembler()
	wholes = {}
	for m in sorted(got, key=lambda m: (m.partition, m.offset)):
		whole = kit.push(m.value, m.headers, m.topic, m.partition, m.offset)
		if whole is not None:
			wholes[whole.headers["ce_id"]] = whole
	assert kit.pending() == 0 and not kit.stats["refused"]
	return wholes


def check_parts(got, large, limit: int) -> list:
	"""The large event's parts: consecutive in one partition, the header contract; returns them."""
	pieces = sorted(by_event_id(got)[large.event_id], key=lambda m: m.offset)
	count = len(pieces)
	assert count == -(-len(large.payload) // parts.part_size(limit)) > 1
	assert {m.partition for m in pieces} == {pieces[0].partition} and {m.key for m in pieces} == {
		b"Acme Corp"
	}
	assert [m.offset for m in pieces] == list(range(pieces[0].offset, pieces[0].offset + count))
	checksum = parts.checksum(large.payload)
	for i, m in enumerate(pieces, 1):
		assert (m.headers["es_part"], m.headers["es_part_of"]) == (f"{i}/{count}", large.event_id)
		assert m.headers["es_parts_checksum"] == checksum and m.headers["ce_subject"] == "GL Entry/large"
		assert len(m.value) <= parts.part_size(limit)
	return pieces


def check_log(written, large, first_part) -> None:
	log = {r.event_id: r for r in rows()}
	assert {r.status for r in log.values()} == {Status.SENT}, "nothing Dead, nothing left"
	assert {log[e.event_id].attempts for e in written} == {0}  # every event on its first attempt
	row = log[large.event_id]
	assert (row.kafka_partition, row.kafka_offset) == (first_part.partition, first_part.offset)


def test_a_5_mb_event_is_delivered_in_parts_and_reassembled_by_the_consumer_kit(
	site, kafka_bootstrap, workers
):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters)
	packet = int(frappe.db.sql("SELECT @@max_allowed_packet")[0][0])
	began = time.monotonic()
	small, large = large_backlog(topic, 5_000_000)
	written_in = time.monotonic() - began
	workers.start(1)
	wait_for(all_delivered, 120, "every event delivered")
	delivered_in = time.monotonic() - began

	got = consume(kafka_bootstrap, topic, expect=len(small) + 6, timeout=60)
	pieces = check_parts(got, large, parts.DEFAULT_LIMIT)
	check_log([*small, large], large, pieces[0])
	wholes = reassembled(got)
	assert set(wholes) == {e.event_id for e in [*small, large]}
	assert wholes[large.event_id].value == large.payload, "byte-identical"
	assert wholes[large.event_id].offset == pieces[0].offset
	assert all(wholes[e.event_id].value == e.payload and wholes[e.event_id].parts == 0 for e in small)

	events = kit_events(kafka_bootstrap, topic, expect=len(small) + 1)
	(big,) = [e for e in events if e.event_id == large.event_id]
	assert big.document["remarks"] == filler(5_000_000, 5_000_000).decode() and big.sequence == 2
	acme = [e.sequence for e in events if e.company == "Acme Corp"]
	assert acme == [1, 2, 3], "the large event in its company's order"
	stats = drainer_stats()
	assert (int(stats["split_events"]), int(stats["parts"]), int(stats["dead"])) == (1, len(pieces), 0)
	print(
		f"\nmax_allowed_packet {packet:,} bytes; event value {len(large.payload):,} bytes -> "
		f"{len(pieces)} parts of {[len(m.value) for m in pieces]} bytes (limit {parts.DEFAULT_LIMIT:,}), "
		f"partition {pieces[0].partition} offsets {pieces[0].offset}-{pieces[-1].offset}; written in "
		f"{written_in:.2f} s, delivered in {delivered_in:.2f} s; EventConsumer decoded {len(events)} events, "
		f"the large one whole ({len(big.document['remarks']):,}-character remarks); drainer {stats}"
	)


def kit_events(bootstrap: str, topic: str, expect: int, timeout: float = 60) -> list:
	"""What `EventConsumer` (the kit, as a user runs it) gives for `topic`."""
	events: list = []
	with EventConsumer(bootstrap, topics=[topic], lateness=timedelta(seconds=5)) as consumer:
		deadline = time.monotonic() + timeout
		while len(events) < expect and time.monotonic() < deadline:
			events += consumer.poll(0.5)
		events += consumer.flush()
		assert not consumer.errors, list(consumer.errors)
		assert consumer.stats["messages"] > expect  # parts were read ...
	return events  # ... and came out as events


def test_the_drainer_learns_a_topics_lower_max_message_bytes(site, kafka_bootstrap, workers):
	"""A topic created with max.message.bytes 200,000: parts of at most 200,000 - 16 KiB
	bytes, in record batches of at most 200,000 bytes (the producer's own limit, 1,000,000,
	would have been refused by the broker)."""
	topic, dead_letters = small_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters)
	small, large = large_backlog(topic, 1_000_000)
	workers.start(1)
	wait_for(all_delivered, 120, "every event delivered")

	got = consume(kafka_bootstrap, topic, expect=len(small) + 6, timeout=60)
	pieces = check_parts(got, large, 200_000)
	check_log([*small, large], large, pieces[0])
	wholes = reassembled(got)
	assert wholes[large.event_id].value == large.payload, "byte-identical"
	assert CODEC.reference(wholes[large.event_id].value) == "large"
	wait_for(lambda: not drainer_running() and drainer_stats().get("runs"), 30, "the drainer left when idle")
	stats = drainer_stats()
	assert (int(stats["split_events"]), int(stats["parts"]), int(stats["dead"])) == (1, len(pieces), 0)
	print(
		f"\ntopic max.message.bytes 200,000: event value {len(large.payload):,} bytes -> {len(pieces)} parts "
		f"of at most {max(len(m.value) for m in pieces):,} bytes (at the producer's 1,000,000 it would be "
		f"{-(-len(large.payload) // parts.part_size(parts.DEFAULT_LIMIT))} parts the broker refuses); "
		f"all {len(small) + 1} events Sent; drainer {stats}"
	)


def small_topic(bootstrap: str, max_message_bytes: int = 200_000) -> str:
	topic = f"erpnext.test-small-{random.randrange(16**8):08x}"
	config = {"max.message.bytes": str(max_message_bytes)}
	new = NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1, config=config)
	admin = AdminClient({"bootstrap.servers": bootstrap})  # held until the topic is made
	admin.create_topics([new])[topic].result(15)
	return topic


def test_record_batches_are_capped_at_the_topics_limit(kafka_bootstrap):
	"""Why the producer caps its record batches: six 183,616-byte messages on one key, each
	within the topic's 200,000 bytes, are refused when batched together (librdkafka batches
	up to 1,000,000 bytes) and delivered once `batch.size` is the topic's limit."""
	topic = small_topic(kafka_bootstrap)
	conf = kafka_config.producer_config(
		StreamingConfig(
			enabled=True, bootstrap_servers=kafka_bootstrap, producer_properties=(("linger.ms", "50"),)
		)
	)
	producer = KafkaProducer(conf)
	assert producer.topic_max_bytes(topic) == 200_000
	outcomes = []
	try:
		for attempt in ("uncapped", "capped"):
			if attempt == "capped":
				assert producer.cap_batches(200_000, 5) and producer.batch_bytes == 200_000
			batch = [
				OutgoingMessage(f"{attempt}-{i}", topic, b"Acme Corp", filler(183_616, i), {"ce_id": f"{i}"})
				for i in range(6)
			]
			result = producer.finish(producer.start(batch, 15))
			outcomes.append(
				Counter(d.error.name() if d.error else "delivered" for d in result.deliveries.values())
			)
	finally:
		producer.close(5)
	print(
		f"\nsix 183,616-byte messages to a 200,000-byte topic: uncapped {dict(outcomes[0])}, capped {dict(outcomes[1])}"
	)
	assert outcomes[0]["MSG_SIZE_TOO_LARGE"] >= 2  # refused as a batch (the first may go alone)
	assert outcomes[1] == {"delivered": 6}
