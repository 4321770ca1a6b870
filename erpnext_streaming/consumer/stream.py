"""Subscribe to the event topics and get decoded, deduplicated, ordered events.

    from erpnext_streaming.consumer import EventConsumer

    with EventConsumer("kafka:9092", lateness=timedelta(seconds=30)) as events:
        while True:
            for event in events.poll(1.0):
                ...  # event.company, event.doctype, event.document, event.late

`EventConsumer` is a thin layer over `confluent_kafka.Consumer`: `Decoder` for the three
encodings, `Reorderer` for duplicates, order and the watermark. Messages that cannot be
decoded are counted and kept in `errors` (the last 100), never raised: one bad message
must not stop a dashboard. Offsets: by default a fresh consumer group reads every topic
from the beginning and commits nothing (the KPIs here live in memory and are rebuilt on
start); a durable consumer should store its state and offsets together.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from datetime import timedelta
from typing import Any

from confluent_kafka import KafkaError

from erpnext_streaming.constants import BUILTIN_SPECS, DEFAULT_TOPIC_PREFIX, default_topic
from erpnext_streaming.consumer.decoding import DecodeError, Decoder, Event
from erpnext_streaming.consumer.ordering import Reorderer


def default_topics(prefix: str = DEFAULT_TOPIC_PREFIX) -> list[str]:
	"""The topics of the five built-in doctypes under a topic prefix."""
	return [default_topic(prefix, spec.doctype) for spec in BUILTIN_SPECS]


class EventConsumer:
	def __init__(
		self,
		bootstrap_servers: str,
		topics: list[str] | None = None,
		group_id: str | None = None,
		decoder: Decoder | None = None,
		reorderer: Reorderer | None = None,
		lateness: timedelta = timedelta(seconds=30),
		config: dict[str, Any] | None = None,
	):
		from confluent_kafka import Consumer

		self.topics = topics or default_topics()
		self.decoder = decoder or Decoder()
		self.reorderer = reorderer or Reorderer(lateness=lateness)
		self.stats: Counter[str] = Counter()
		self.errors: deque[tuple[str, int, int, str]] = deque(maxlen=100)
		conf = {
			"bootstrap.servers": bootstrap_servers,
			"group.id": group_id or f"erpnext-streaming-kit-{uuid.uuid4().hex[:8]}",
			"auto.offset.reset": "earliest",
			"enable.auto.commit": False,
			# pick up topics created after the subscription (a new doctype's first event)
			"topic.metadata.refresh.interval.ms": 5000,
			**(config or {}),
		}
		self._consumer = Consumer(conf)
		self._consumer.subscribe(self.topics)

	def poll(self, timeout: float = 1.0, max_messages: int = 500) -> list[Event]:
		"""Events released by this poll, in order (see `Reorderer`)."""
		out: list[Event] = []
		for message in self._consumer.consume(max_messages, timeout):
			error = message.error()
			if error is not None:
				if error.code() != KafkaError._PARTITION_EOF:
					self.stats["kafka_errors"] += 1
				continue
			self.stats["messages"] += 1
			try:
				event = self.decoder.decode(
					message.value(), message.headers(), message.topic(), message.partition(), message.offset()
				)
			except DecodeError as e:
				self.stats["decode_errors"] += 1
				self.errors.append((message.topic(), message.partition(), message.offset(), str(e)))
				continue
			out.extend(self.reorderer.push(event))
		return out

	def flush(self) -> list[Event]:
		return self.reorderer.flush()

	def close(self) -> None:
		self._consumer.close()

	def __enter__(self) -> EventConsumer:
		return self

	def __exit__(self, *exc: Any) -> None:
		self.close()
