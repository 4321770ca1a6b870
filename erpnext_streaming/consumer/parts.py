"""Reassemble large events sent as parts (docs/consumer-guide.md, "Large events").

An event larger than its topic's message limit arrives as `n` consecutive messages on the
same key (so the same partition, in order), each with the event's own headers plus
`es_part` (`"i/n"`, 1-based), `es_parts_checksum` (SHA-256 hex of the whole value) and
`es_part_of` (the event id). `Reassembler.push` takes every message read: an ordinary
message comes back as it is; a part is held until all `n` parts of its set are in, then
the whole value comes back (with the first part's offset and the event's own headers)
once its SHA-256 matches the checksum; a set that does not check is refused
(`PartsError`) and dropped.

Parts are held per (topic, partition, event id, checksum): a part already held is
dropped (a retried event repeats its parts; a whole event may come back twice, like any
duplicate, and the `Deduplicator` drops it). Sets that never complete (an event that went
Dead after some of its parts were written) are forgotten oldest first beyond
`max_events` sets or `max_bytes` held (`evicted`). A consumer that commits offsets should
not commit past `holding(topic, partition)`, the first offset of a set still incomplete.
"""

from __future__ import annotations

import hashlib
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from erpnext_streaming.constants import PART_HEADER, PART_HEADERS, PART_OF_HEADER, PARTS_CHECKSUM_HEADER
from erpnext_streaming.consumer.decoding import DecodeError, header_map


class PartsError(DecodeError):
	"""A part set that does not check (checksum, numbering), or a malformed part."""


@dataclass(frozen=True, slots=True)
class Whole:
	"""A message as the consumer should decode it: an ordinary one as read, or a
	reassembled event (its first part's offset, the event's headers without the part's)."""

	value: bytes | None
	headers: Any
	topic: str = ""
	partition: int | None = None
	offset: int | None = None
	parts: int = 0  # how many parts it came in (0: an ordinary message)


@dataclass(slots=True)
class _Set:
	count: int
	headers: dict[str, str]
	offset: int | None
	held: dict[int, bytes] = field(default_factory=dict)
	size: int = 0


class Reassembler:
	def __init__(self, max_events: int = 1000, max_bytes: int = 512 * 1024 * 1024):
		self.max_events = max_events
		self.max_bytes = max_bytes
		self.stats: Counter[str] = Counter()
		self._sets: OrderedDict[tuple, _Set] = OrderedDict()
		self._bytes = 0

	def push(
		self,
		value: bytes | None,
		headers: Any = None,
		topic: str = "",
		partition: int | None = None,
		offset: int | None = None,
	) -> Whole | None:
		"""The message to decode, or None while a part's set is incomplete. Raises
		`PartsError` for a set (or part) that does not check."""
		named = header_map(headers)
		if PART_HEADER not in named:
			return Whole(value, headers, topic, partition, offset)
		index, count = _numbering(named)
		event_id, digest = named.get(PART_OF_HEADER, ""), named.get(PARTS_CHECKSUM_HEADER, "")
		if not event_id or len(digest) != 64:
			raise PartsError(f"part {index}/{count} without {PART_OF_HEADER} or {PARTS_CHECKSUM_HEADER}")
		key = (topic, partition, event_id, digest)
		held = self._sets.get(key)
		if held is None:
			own = {k: v for k, v in named.items() if k not in PART_HEADERS}
			held = self._sets[key] = _Set(count, own, offset)
		if held.count != count:
			self._drop(key)
			raise PartsError(f"event {event_id}: part {index}/{count} of a set of {held.count} parts")
		if index in held.held:
			self.stats["duplicate_parts"] += 1
			return None
		held.held[index] = value or b""
		held.size += len(value or b"")
		self._bytes += len(value or b"")
		if offset is not None and (held.offset is None or offset < held.offset):
			held.offset = offset
		self.stats["parts"] += 1
		if len(held.held) < count:
			self._bound()
			return None
		return self._whole(key, topic, partition)

	def _whole(self, key: tuple, topic: str, partition: int | None) -> Whole:
		held = self._drop(key)
		whole = b"".join(held.held[i] for i in range(1, held.count + 1))
		if hashlib.sha256(whole).hexdigest() != key[3]:
			self.stats["refused"] += 1
			raise PartsError(
				f"event {key[2]}: the {held.count} parts ({len(whole)} bytes) do not match "
				f"{PARTS_CHECKSUM_HEADER} {key[3]}"
			)
		self.stats["events"] += 1
		return Whole(whole, held.headers, topic, partition, held.offset, held.count)

	def _drop(self, key: tuple) -> _Set:
		held = self._sets.pop(key)
		self._bytes -= held.size
		return held

	def _bound(self) -> None:
		"""Forget the oldest incomplete sets beyond `max_events` or `max_bytes`."""
		while len(self._sets) > self.max_events or (self._bytes > self.max_bytes and len(self._sets) > 1):
			self._drop(next(iter(self._sets)))
			self.stats["evicted"] += 1

	def holding(self, topic: str, partition: int | None) -> int | None:
		"""The first offset of an incomplete set in this partition (None: nothing held)."""
		offsets = [
			s.offset
			for (t, p, _, _), s in self._sets.items()
			if (t, p) == (topic, partition) and s.offset is not None
		]
		return min(offsets) if offsets else None

	def pending(self) -> int:
		"""How many incomplete sets are held."""
		return len(self._sets)


def _numbering(headers: Mapping[str, str]) -> tuple[int, int]:
	"""(i, n) of `es_part: "i/n"`; raises `PartsError` on anything else."""
	text = headers.get(PART_HEADER, "")
	index, _, count = text.partition("/")
	if not (index.isdigit() and count.isdigit()) or not 1 <= int(index) <= int(count):
		raise PartsError(f"{PART_HEADER} {text!r} is not i/n with 1 <= i <= n")
	return int(index), int(count)
