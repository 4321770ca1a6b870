"""Subscribe to the event topics and get decoded, deduplicated, ordered events.

    from erpnext_streaming.consumer import EventConsumer

    with EventConsumer("kafka:9092", lateness=timedelta(seconds=30)) as events:
        while True:
            for event in events.poll(1.0):
                ...  # event.company, event.doctype, event.document, event.late

`EventConsumer` is a thin layer over `confluent_kafka.Consumer`: `Reassembler` for large
events sent in parts, `Decoder` for the three encodings, `Reorderer` for duplicates, order
and the watermark. It tracks how far each
assigned partition has been read (the newest event time, and whether it has caught up,
from `enable.partition.eof`) and caps the watermark at the slowest partition still behind
(`Reorderer.advance`), so a backlog read one partition after another does not turn events
of the partitions read later into late events. Messages that cannot be
decoded are counted and kept in `errors` (the last 100), never raised: one bad message
must not stop a dashboard. Offsets: by default a fresh consumer group reads every topic
from the beginning and commits nothing (the KPIs here live in memory and are rebuilt on
start); a durable consumer should store its state and offsets together.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from datetime import datetime, timedelta, timezone
from typing import Any

from confluent_kafka import KafkaError

from erpnext_streaming.constants import BUILTIN_SPECS, DEFAULT_TOPIC_PREFIX, default_topic
from erpnext_streaming.consumer.decoding import DecodeError, Decoder, Event
from erpnext_streaming.consumer.ordering import Reorderer
from erpnext_streaming.consumer.parts import Reassembler

# a horizon before any event: a partition that has not been read at all yet holds every wait
HELD = datetime.min.replace(tzinfo=timezone.utc) + timedelta(days=366)


def default_topics(prefix: str = DEFAULT_TOPIC_PREFIX) -> list[str]:
	"""The topics of the built-in doctypes under a topic prefix."""
	return [default_topic(prefix, spec.doctype) for spec in BUILTIN_SPECS]


class EventConsumer:
	def __init__(
		self,
		bootstrap_servers: str,
		topics: list[str] | None = None,
		group_id: str | None = None,
		decoder: Decoder | None = None,
		reorderer: Reorderer | None = None,
		reassembler: Reassembler | None = None,
		lateness: timedelta = timedelta(seconds=30),
		config: dict[str, Any] | None = None,
	):
		from confluent_kafka import Consumer

		self.topics = topics or default_topics()
		self.decoder = decoder or Decoder()
		self.reorderer = reorderer or Reorderer(lateness=lateness)
		self.reassembler = reassembler or Reassembler()
		self.stats: Counter[str] = Counter()
		self.errors: deque[tuple[str, int, int, str]] = deque(maxlen=100)
		conf = {
			"bootstrap.servers": bootstrap_servers,
			"group.id": group_id or f"erpnext-streaming-kit-{uuid.uuid4().hex[:8]}",
			"auto.offset.reset": "earliest",
			"enable.auto.commit": False,
			# pick up topics created after the subscription (a new doctype's first event)
			"topic.metadata.refresh.interval.ms": 5000,
			"enable.partition.eof": True,
			**(config or {}),
		}
		# (topic, partition) -> [newest event time read, caught up]
		self.positions: dict[tuple[str, int], list] = {}
		self._consumer = Consumer(conf)
		self._consumer.subscribe(self.topics, on_assign=self._assigned, on_revoke=self._revoked)

	def _assigned(self, consumer: Any, partitions: list) -> None:
		for p in partitions:
			self.positions.setdefault((p.topic, p.partition), [None, False])

	def _revoked(self, consumer: Any, partitions: list) -> None:
		for p in partitions:
			self.positions.pop((p.topic, p.partition), None)

	def horizon(self) -> datetime | None:
		"""How far every partition not yet caught up has been read (None: all caught up)."""
		behind = [time for time, caught_up in self.positions.values() if not caught_up]
		if not behind:
			return None
		return HELD if None in behind else min(behind)

	def ends(self, timeout: float = 10.0) -> tuple[dict[tuple[str, int], int], list[str]]:
		"""How many messages each partition of the topics holds now, and the topics that do
		not exist: what a reader that stops at the end (`streaming reconcile`) waits for."""
		from confluent_kafka import TopicPartition

		found = self._consumer.list_topics(timeout=timeout).topics
		sizes, missing = {}, []
		for topic in self.topics:
			if topic not in found or found[topic].error is not None:
				missing.append(topic)
				continue
			for p in found[topic].partitions:
				low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
				sizes[(topic, p)] = high - low
		return sizes, missing

	def poll(self, timeout: float = 1.0, max_messages: int = 500) -> list[Event]:
		"""Events released by this poll, in order (see `Reorderer`)."""
		out: list[Event] = []
		for message in self._consumer.consume(max_messages, timeout):
			error = message.error()
			position = self.positions.setdefault((message.topic(), message.partition()), [None, False])
			if error is not None:
				if error.code() == KafkaError._PARTITION_EOF:
					position[1] = True
				else:
					self.stats["kafka_errors"] += 1
				continue
			position[1] = False
			self.stats["messages"] += 1
			try:
				event = self._decode(message)
			except DecodeError as e:  # parts that do not check (PartsError) too
				self.stats["decode_errors"] += 1
				self.errors.append((message.topic(), message.partition(), message.offset(), str(e)))
				continue
			if event is None:  # a part of a large event, held until its set is complete
				continue
			moment = self.reorderer.time_of(event)
			if position[0] is None or moment > position[0]:
				position[0] = moment
			out.extend(self.reorderer.push(event))
		out.extend(self.reorderer.advance(self.horizon()))
		return out

	def _decode(self, message: Any) -> Event | None:
		"""The event of a message, or None for a part whose set is still incomplete."""
		whole = self.reassembler.push(
			message.value(), message.headers(), message.topic(), message.partition(), message.offset()
		)
		if whole is None:
			return None
		return self.decoder.decode(whole.value, whole.headers, whole.topic, whole.partition, whole.offset)

	def flush(self) -> list[Event]:
		return self.reorderer.flush()

	def close(self) -> None:
		self._consumer.close()

	def __enter__(self) -> EventConsumer:
		return self

	def __exit__(self, *exc: Any) -> None:
		self.close()
