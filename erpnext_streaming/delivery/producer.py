"""A small interface over confluent_kafka.Producer: send a batch, get every delivery report.

`start` hands a batch to librdkafka and `finish` waits, bounded, for its reports
(`flush(timeout)`), so the drainer claims its next batch in between. Messages left without a
report when the bound runs out count as failed, are purged, and the instance is marked for
discarding, so a late report can never be confused with a later batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from erpnext_streaming import kafka_config
from erpnext_streaming.delivery.policy import TOPIC_CODES, blame, refusal

# `send` serves delivery reports every this many messages (and when the local queue is
# full), not after every message: the reports wait in librdkafka's queue until `flush`
POLL_EVERY = 500
# librdkafka's defaults for `message.max.bytes` and `batch.size`
LIBRDKAFKA_MESSAGE_MAX_BYTES = 1_000_000
LIBRDKAFKA_BATCH_SIZE = 1_000_000
# how long a topic's DescribeConfigs may take (once per topic per drainer run)
DESCRIBE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
	ref: Any  # the Event Log row name; comes back in the delivery report
	topic: str
	key: bytes | str | None
	value: bytes | None
	headers: list[tuple[str, bytes]] | list[tuple[str, str]] | dict[str, str]  # str: from a bundle


@dataclass(frozen=True, slots=True)
class Delivery:
	ref: Any
	error: KafkaError | None
	partition: int | None = None
	offset: int | None = None


@dataclass(slots=True)
class BatchResult:
	deliveries: dict[Any, Delivery] = field(default_factory=dict)
	fatal: KafkaError | None = None
	discard: bool = False  # the producer instance must not be used again


@dataclass(slots=True)
class Sending:
	"""A batch handed to the producer whose delivery reports are still coming in."""

	messages: Sequence[OutgoingMessage]
	deliveries: dict[Any, Delivery]
	deadline: float
	timeout: float


class KafkaProducer:
	"""The drainer's producer on confluent_kafka. `config` comes from `kafka_config.producer_config`."""

	def __init__(self, config: dict[str, Any], logger: Any = None):
		conf = {**config, "error_cb": self.on_error}
		if logger is not None:
			conf["logger"] = logger
		self._conf = conf
		self._producer = Producer(conf)
		self._admin: Any = None
		self.fatal: KafkaError | None = None
		self.refused: KafkaError | None = None  # the broker refuses the connection (until a delivery)
		# the largest message librdkafka takes, and the largest record batch it builds
		self.message_max_bytes = int(config.get("message.max.bytes") or LIBRDKAFKA_MESSAGE_MAX_BYTES)
		self.batch_bytes = min(self.message_max_bytes, int(config.get("batch.size") or LIBRDKAFKA_BATCH_SIZE))

	def topic_max_bytes(self, topic: str, timeout: float = DESCRIBE_TIMEOUT_SECONDS) -> int | None:
		"""The topic's `max.message.bytes` (DescribeConfigs, with the producer's connection
		settings and logger); raises when it cannot be read."""
		from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

		if self._admin is None:
			logger = {k: self._conf[k] for k in ("logger",) if k in self._conf}
			self._admin = AdminClient({**kafka_config.connection_properties(self._conf), **logger})
		resource = ConfigResource(ResourceType.TOPIC, topic)
		futures = self._admin.describe_configs([resource], request_timeout=timeout)
		entry = next(iter(futures.values())).result(timeout).get("max.message.bytes")
		return int(entry.value) if entry is not None and entry.value else None

	def cap_batches(self, max_bytes: int, timeout: float) -> bool:
		"""Build record batches of at most `max_bytes` (a topic whose `max.message.bytes` is
		below the producer's batch size refuses a larger batch of small messages): between
		batches, the librdkafka instance is replaced by one with `batch.size` lowered (waiting
		up to `timeout` for anything it still holds). True if it was replaced."""
		if max_bytes >= self.batch_bytes or self._producer is None:
			return False
		_flush_or_purge(self._producer, timeout)
		self._conf = {**self._conf, "batch.size": str(max_bytes)}
		self._producer = Producer(self._conf)
		self.batch_bytes = max_bytes
		return True

	def on_error(self, error: KafkaError) -> None:
		"""librdkafka's error callback: a fatal error makes the instance unusable; a refused
		connection (credentials, TLS) is why its messages time out (`policy.blame`)."""
		if error.fatal() and self.fatal is None:
			self.fatal = error
		elif (refused := refusal(error)) is not None:
			self.refused = refused

	def start(self, messages: Sequence[OutgoingMessage], timeout: float) -> Sending:
		"""Hand the batch to the client (no waiting for acknowledgements)."""
		deliveries: dict[Any, Delivery] = {}
		deadline = time.monotonic() + timeout
		for count, message in enumerate(messages, 1):
			self._produce(message, deliveries, deadline)
			if count % POLL_EVERY == 0:
				self._producer.poll(0)  # serve reports (and the error callback) as we go
		return Sending(messages, deliveries, deadline, timeout)

	def finish(self, sending: Sending) -> BatchResult:
		"""Wait, at most until the batch's deadline, for every delivery report."""
		messages, deliveries, timeout = sending.messages, sending.deliveries, sending.timeout
		remaining = _flush_or_purge(self._producer, max(0.0, sending.deadline - time.monotonic()))
		result = BatchResult(deliveries, discard=remaining > 0)
		for message in messages:
			if message.ref not in deliveries:
				deliveries[message.ref] = Delivery(
					message.ref,
					KafkaError(
						KafkaError._TIMED_OUT,
						f"no delivery report within {timeout:g} s ({remaining} messages left in flush)",
					),
				)
		if self.refused is not None:
			for ref, delivery in deliveries.items():
				if delivery.error is not None:
					deliveries[ref] = dataclasses.replace(delivery, error=blame(delivery.error, self.refused))
		result.fatal = self.fatal
		result.discard = result.discard or self.fatal is not None
		return result

	def _produce(self, message: OutgoingMessage, deliveries: dict[Any, Delivery], deadline: float) -> None:
		"""Hand one message to the client, or record in `deliveries` why it cannot be: a full
		local queue is served (reports) and tried again until the deadline."""
		while True:
			if self.fatal is not None:
				deliveries[message.ref] = Delivery(message.ref, self.fatal)
				return
			try:
				self._producer.produce(
					message.topic,
					value=message.value,
					key=message.key,
					headers=message.headers,
					on_delivery=partial(self._on_delivery, deliveries, message.ref),
				)
				return
			except BufferError:  # the local queue is full: serve reports, try again
				if time.monotonic() >= deadline:
					deliveries[message.ref] = Delivery(message.ref, KafkaError(KafkaError._QUEUE_FULL))
					return
				self._producer.poll(0.05)
			except KafkaException as e:
				error = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
				error = error and _naming_topic(error, message.topic)
				deliveries[message.ref] = Delivery(message.ref, error or KafkaError(KafkaError._FAIL, str(e)))
				if error is not None:
					self.on_error(error)
				return
			except (TypeError, ValueError) as e:
				deliveries[message.ref] = Delivery(
					message.ref, KafkaError(KafkaError._INVALID_ARG, f"{type(e).__name__}: {e}")
				)
				return

	def _on_delivery(self, deliveries: dict[Any, Delivery], ref: Any, error: KafkaError | None, msg) -> None:
		if error is not None:
			error = _naming_topic(error, msg.topic())
			deliveries[ref] = Delivery(ref, error)
			self.on_error(error)
		else:
			self.refused = None
			deliveries[ref] = Delivery(ref, None, msg.partition(), msg.offset())

	def close(self, timeout: float) -> None:
		"""Wait (bounded) for anything still in flight, then drop the instance."""
		producer, self._producer = self._producer, None
		self._admin = None
		if producer is not None:
			_flush_or_purge(producer, timeout)


def _flush_or_purge(producer: Any, timeout: float) -> int:
	"""Wait up to `timeout` for every delivery report; what is left then is purged, so no
	report of it can arrive later. Returns how many messages were left."""
	remaining = producer.flush(timeout)
	if remaining:
		producer.purge(in_queue=True, in_flight=True, blocking=True)
		producer.poll(0)
	return remaining


def _naming_topic(error: KafkaError, topic: str) -> KafkaError:
	"""A topic error that names its topic: health then shows what to create or grant."""
	if error.code() not in TOPIC_CODES:
		return error
	return KafkaError(error.code(), f"{error.str()}: topic {topic}")
