"""A large event as ordered parts: split before producing, folded back into one delivery
(docs/architecture.md, "Large events in parts"; the headers are in docs/consumer-guide.md).

Parts go as consecutive messages on the same key, so they land in one partition in order
(the idempotent producer keeps that order through its retries). The event is delivered when
all its parts are; a failed part retries the whole event, so the consumer kit drops parts it
already holds (`consumer/parts.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError

from erpnext_streaming.constants import PART_HEADER, PART_OF_HEADER, PARTS_CHECKSUM_HEADER
from erpnext_streaming.delivery.producer import Delivery, OutgoingMessage

# librdkafka's own `message.max.bytes` default
DEFAULT_LIMIT = 1_000_000
# room left in every part for its key, headers and the record and batch framing
HEADROOM = 16 * 1024
# more parts than this: the event is refused (Dead as too large)
MAX_PARTS = 100


@dataclass(frozen=True, slots=True)
class Part:
	"""The ref of a part's message: the event's ref, which part (1-based) of how many."""

	ref: Any
	index: int
	count: int


class Unsplittable(ValueError):
	"""An event that would need more than `MAX_PARTS` parts."""


def part_size(limit: int) -> int:
	"""The most value bytes one message may carry under a message limit of `limit` bytes."""
	return max(limit - HEADROOM, limit // 2, 1)


def needs_parts(message: OutgoingMessage, limit: int) -> bool:
	return message.value is not None and len(message.value) > part_size(limit)


def checksum(value: bytes) -> str:
	return hashlib.sha256(value).hexdigest()


def split(message: OutgoingMessage, limit: int) -> list[OutgoingMessage]:
	"""The parts of `message`, in order (refs `Part`). Raises `Unsplittable`."""
	value = message.value or b""
	size = part_size(limit)
	count = -(-len(value) // size)
	if count > MAX_PARTS:
		raise Unsplittable(
			f"{len(value)} bytes would need {count} parts of at most {size} bytes "
			f"(message limit {limit} bytes), more than {MAX_PARTS}"
		)
	own = _pairs(message.headers)
	event_id = next((v for k, v in own if k == "ce_id"), b"")
	extra = [(PARTS_CHECKSUM_HEADER, checksum(value)), (PART_OF_HEADER, _text(event_id))]
	view = memoryview(value)
	return [
		OutgoingMessage(
			Part(message.ref, i, count),
			message.topic,
			message.key,
			bytes(view[(i - 1) * size : i * size]),
			[*own, (PART_HEADER, f"{i}/{count}"), *extra],
		)
		for i in range(1, count + 1)
	]


def merge(deliveries: Mapping[Any, Delivery]) -> dict[Any, Delivery]:
	"""`deliveries` with the reports of parts folded into one per event: its first failed
	part's error, else delivered at its first part's partition and offset."""
	merged: dict[Any, Delivery] = {}
	parts: dict[Any, list[tuple[Part, Delivery]]] = {}
	for ref, delivery in deliveries.items():
		if isinstance(ref, Part):
			parts.setdefault(ref.ref, []).append((ref, delivery))
		else:
			merged[ref] = delivery
	for ref, reports in parts.items():
		reports.sort(key=lambda report: report[0].index)
		failed = next((d.error for _, d in reports if d.error is not None), None)
		if failed is None and len(reports) != reports[0][0].count:
			failed = KafkaError(KafkaError._FAIL, f"{len(reports)} of {reports[0][0].count} parts reported")
		first = reports[0][1]
		merged[ref] = (
			Delivery(ref, failed)
			if failed is not None
			else Delivery(ref, None, first.partition, first.offset)
		)
	return merged


def refused(message: OutgoingMessage, error: Unsplittable) -> Delivery:
	"""The report of an event that cannot be sent in parts: too large, for good."""
	return Delivery(message.ref, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, str(error)))


def _pairs(headers: Any) -> list[tuple[str, Any]]:
	"""A message's headers as a list of pairs (a bundle's are a dict of strings)."""
	if not headers:
		return []
	return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def _text(value: Any) -> str:
	return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)
