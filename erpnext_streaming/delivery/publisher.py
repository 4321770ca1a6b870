"""The drainer's producer: one for a whole run, made on first use and replaced after an
error that leaves it unusable, and the copies of Dead events on the dead-letter topic.

After `KafkaError.fatal()` a librdkafka producer produces nothing more, and a fenced
idempotent producer keeps failing (`policy.classify`), so such a producer is closed without
waiting and the next batch makes a new one. A producer that cannot be made (an unreadable
certificate) fails the batch's messages with the reason instead of raising. Large events go
as parts (`parts.split`/`merge`): the drainer sees events, never parts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from confluent_kafka import KafkaError

from erpnext_streaming.delivery import messages, parts
from erpnext_streaming.delivery.environment import DrainerConfig, DrainStats
from erpnext_streaming.delivery.limits import TopicLimits
from erpnext_streaming.delivery.policy import describe
from erpnext_streaming.delivery.producer import BatchResult, Delivery, KafkaProducer, OutgoingMessage, Sending
from erpnext_streaming.outbox.records import Published

# the broker refused a message (or a batch of them) for its size: never worth a retry as is
SIZE_ERRORS = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})

# a batch handed to the producer (its handle, and the reports of events refused before
# producing: too large even in parts), or its result when no producer could be made
Started = tuple[KafkaProducer, Sending, dict[Any, Delivery]] | BatchResult
# a Dead event to copy: (Event Log row, attempts, reason, whether to omit the value)
DeadLetter = tuple[Any, int, str, bool]


class Publisher:
	def __init__(
		self,
		producer_factory: Callable[[], KafkaProducer],
		stats: DrainStats,
		log: logging.Logger,
		secrets: Sequence[str] = (),
	):
		self.producer_factory = producer_factory
		self.stats = stats
		self.log = log
		self.secrets = tuple(s for s in secrets if s and len(s) >= 3)
		self.producer: KafkaProducer | None = None
		self.limits = TopicLimits(log, self.redact)

	def start(self, outgoing: Sequence[OutgoingMessage], flush_timeout: float, split: bool = True) -> Started:
		"""Hand `outgoing` to the producer (made first if there is none); no waiting. With
		`split`, an event over its topic's limit goes as parts."""
		if self.producer is None:
			try:
				self.producer = self.producer_factory()
			except Exception as e:
				error = KafkaError(KafkaError._FAIL, f"cannot create the producer: {type(e).__name__}: {e}")
				self.log.warning("erpnext_streaming: %s", self.redact(describe(error)))
				return BatchResult({m.ref: Delivery(m.ref, error) for m in outgoing})
			self.stats.producers += 1
		refused: dict[Any, Delivery] = {}
		if split:
			outgoing = self._in_parts(outgoing, refused, flush_timeout)
		return self.producer, self.producer.start(outgoing, flush_timeout), refused

	def _in_parts(
		self, outgoing: Sequence[OutgoingMessage], refused: dict[Any, Delivery], timeout: float
	) -> Sequence[OutgoingMessage]:
		"""`outgoing` with every event over its topic's limit replaced by its parts, in place;
		an event that cannot be split is left out, its report put in `refused`. First the
		producer's record batches are capped at the smallest limit of these topics."""
		producer = self.producer
		limit = {topic: self.limits.limit(producer, topic) for topic in {m.topic for m in outgoing}}
		cap = getattr(producer, "cap_batches", None)
		if limit and cap is not None and cap(min(limit.values()), timeout):
			self.log.info("erpnext_streaming: record batches capped at %d bytes", min(limit.values()))
		if not any(parts.needs_parts(m, limit[m.topic]) for m in outgoing):
			return outgoing
		expanded: list[OutgoingMessage] = []
		for message in outgoing:
			if not parts.needs_parts(message, limit[message.topic]):
				expanded.append(message)
				continue
			try:
				pieces = parts.split(message, limit[message.topic])
			except parts.Unsplittable as e:
				refused[message.ref] = parts.refused(message, e)
				continue
			expanded += pieces
			self.stats.split_events += 1
			self.stats.parts += len(pieces)
		return expanded

	def finish(self, started: Started) -> BatchResult:
		"""The delivery reports of a started batch (the producer's bounded flush); a producer
		that says it must go is closed without waiting."""
		if isinstance(started, BatchResult):
			return started
		producer, sending, refused = started
		result = producer.finish(sending)
		result.deliveries = {**parts.merge(result.deliveries), **refused}
		if result.discard and producer is self.producer:
			if result.fatal is not None:
				self.log.warning(
					"erpnext_streaming: fatal producer error, the producer is replaced: %s",
					self.redact(describe(result.fatal)),
				)
			self.close(timeout=0)
		return result

	def send(self, outgoing: Sequence[OutgoingMessage], flush_timeout: float) -> BatchResult:
		"""Start and finish at once, never in parts (dead-letter copies)."""
		return self.finish(self.start(outgoing, flush_timeout, split=False))

	def send_dead_letters(
		self, dying: Sequence[DeadLetter], config: DrainerConfig, time_zone: ZoneInfo
	) -> tuple[dict[Any, Published], bool]:
		"""Copy rows to the dead-letter topic: the copies that arrived, by row name, and
		whether any did not (to be tried again later). A copy refused for its size is sent
		again at once without the value (it stays in the Event Log)."""
		topic = config.dead_letter_topic
		if not dying or not topic:
			return {}, False
		copies: dict[Any, Published] = {}
		missed = False
		attempt = list(dying)
		for _ in range(2):
			result = self.send(
				[
					messages.dead_letter(row, config.site, time_zone, topic, reason, attempts, omit)
					for row, attempts, reason, omit in attempt
				],
				config.flush_timeout_seconds,
			)
			retry = []
			for row, attempts, reason, omit in attempt:
				delivery = result.deliveries[row["name"]]
				if delivery.error is None:
					copies[row["name"]] = Published(row["name"], delivery.partition, delivery.offset)
				elif delivery.error.code() in SIZE_ERRORS and not omit:
					retry.append((row, attempts, reason, True))
				else:
					missed = True
					self.log.warning(
						"erpnext_streaming: dead-letter copy of Event Log %s failed, will retry: %s",
						row["name"],
						self.redact(describe(delivery.error)),
					)
			if not retry:
				break
			attempt = retry
		return copies, missed

	def close(self, timeout: float) -> None:
		"""Close the producer, waiting up to `timeout` for what it still holds (0: drop it)."""
		producer, self.producer = self.producer, None
		if producer is not None:
			try:
				producer.close(timeout)
			except Exception:
				self.log.exception("erpnext_streaming: closing the producer failed")

	def redact(self, text: str) -> str:
		"""`text` without the configured secrets, for logs and `last_error` (an error may quote them)."""
		for secret in self.secrets:
			text = text.replace(secret, "***")
		return text
