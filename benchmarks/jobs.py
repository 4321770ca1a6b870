"""Jobs the benchmark's RQ workers run (imported by the work horse by dotted path)."""

from __future__ import annotations

from confluent_kafka import Producer


def publish_one(bootstrap: str, topic: str, key: bytes, value: bytes, headers: list) -> None:
	"""The pattern of existing Frappe Kafka apps (P4's baseline): one job per message, a new
	producer in each job, a flush per message."""
	producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
	errors = []
	producer.produce(topic, value=value, key=key, headers=headers, on_delivery=lambda e, m: errors.append(e))
	remaining = producer.flush(30)
	if remaining or any(errors):
		raise RuntimeError(f"not delivered: {remaining} left, errors {errors}")
