"""How large a message each topic takes, learned once per topic per drainer run.

The smaller of the producer's `message.max.bytes` (librdkafka refuses a larger message) and
the topic's `max.message.bytes` (the broker refuses a larger batch), read with
DescribeConfigs on first use. When the topic's value cannot be read, the producer's limit is
used for the rest of the run, and a part the broker still refuses sends its event Dead.
"""

from __future__ import annotations

import logging
from typing import Any

from erpnext_streaming.delivery.parts import DEFAULT_LIMIT


class TopicLimits:
	def __init__(self, log: logging.Logger, redact: Any = str):
		self.log = log
		self.redact = redact
		self.known: dict[str, int] = {}

	def limit(self, producer: Any, topic: str) -> int:
		"""The message limit of `topic` in bytes (learned on first use, then cached)."""
		known = self.known.get(topic)
		if known is not None:
			return known
		own = int(getattr(producer, "message_max_bytes", DEFAULT_LIMIT))
		learn = getattr(producer, "topic_max_bytes", None)
		learned = None
		if learn is not None:
			try:
				learned = learn(topic)
			except Exception as e:
				self.log.info(
					"erpnext_streaming: max.message.bytes of topic %s not readable, using the producer's "
					"message.max.bytes (%d): %s",
					topic,
					own,
					self.redact(f"{type(e).__name__}: {e}"),
				)
		limit = min(own, learned) if learned else own
		self.known[topic] = limit
		return limit
