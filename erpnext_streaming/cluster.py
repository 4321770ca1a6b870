"""Ask the Kafka cluster who it is: the "Test connection" button, health checks and
`streaming check-connection` / `create-topics`.

Returns plain data (cluster id, controller, brokers, topics, and for the topics asked
about their partitions, replication factor and `min.insync.replicas`) or the exact
librdkafka error text, never the configuration (which may hold the SASL password).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

DEFAULT_TIMEOUT_SECONDS = 10.0

# librdkafka reports every reconnect; the copies differ only in this suffix
_ATTEMPT_TIMING = re.compile(r"\s*\(after \d+ms in state [A-Z_]+\)")


def describe_cluster(
	conf: dict[str, str], timeout: float = DEFAULT_TIMEOUT_SECONDS, topics: Sequence[str] = ()
) -> dict[str, Any]:
	"""`{"ok": True, "cluster_id", "controller_id", "brokers", "topics"}` or `{"ok": False, "error"}`.

	With `topics`: also `"layout"`, `{topic: {"partitions", "replication_factor",
	"min_insync_replicas"}}` for those of them that exist (`min_insync_replicas` None when
	the cluster does not let this client read topic configs)."""
	from confluent_kafka import KafkaException
	from confluent_kafka.admin import AdminClient

	errors: list[str] = []
	client_conf = {**conf, "error_cb": lambda err: errors.append(err.str()), "logger": Quiet()}
	try:
		client = AdminClient(client_conf)
	except (KafkaException, TypeError, ValueError) as e:
		return {"ok": False, "error": _text(e)}
	try:
		metadata = client.list_topics(timeout=timeout)
	except KafkaException as e:
		client.poll(0)  # serve error_cb: the underlying cause (refused, auth, TLS) is reported there
		detail = _text(e)
		unique = dict.fromkeys(_ATTEMPT_TIMING.sub("", err) for err in errors)
		causes = [err for err in unique if err not in detail]
		text = "; ".join([detail, *causes])
		from erpnext_streaming.tls_diagnosis import explain

		if reason := explain(conf, text):
			text = f"{reason} ({text})"
		return {"ok": False, "error": text}
	answer = {
		"ok": True,
		"cluster_id": metadata.cluster_id,
		"controller_id": metadata.controller_id,
		"brokers": sorted(f"{b.host}:{b.port}" for b in metadata.brokers.values()),
		"topics": sorted(t for t in metadata.topics if not t.startswith("__")),
	}
	if topics:
		answer["layout"] = _layout(client, metadata, topics, timeout)
	return answer


def _layout(client: Any, metadata: Any, topics: Sequence[str], timeout: float) -> dict[str, dict]:
	"""Partitions and replication factor (the smallest replica count of any partition) from
	the metadata; `min.insync.replicas` from one DescribeConfigs request."""
	layout = {}
	for name in topics:
		topic = metadata.topics.get(name)
		if topic is None or topic.error is not None or not topic.partitions:
			continue
		layout[name] = {
			"partitions": len(topic.partitions),
			"replication_factor": min(len(p.replicas) for p in topic.partitions.values()),
			"min_insync_replicas": None,
		}
	if layout:
		for name, value in _min_insync_replicas(client, list(layout), timeout).items():
			layout[name]["min_insync_replicas"] = value
	return layout


def _min_insync_replicas(client: Any, topics: list[str], timeout: float) -> dict[str, int]:
	from confluent_kafka import KafkaException
	from confluent_kafka.admin import ConfigResource, ResourceType

	found = {}
	futures = client.describe_configs(
		[ConfigResource(ResourceType.TOPIC, t) for t in topics], request_timeout=timeout
	)
	for resource, future in futures.items():
		try:
			entry = future.result(timeout + 5).get("min.insync.replicas")
		except KafkaException:  # no DescribeConfigs on the topic: unknown, not an error
			continue
		if entry is not None and entry.value is not None:
			found[resource.name] = int(entry.value)
	return found


def _text(error: Exception) -> str:
	inner = error.args[0] if error.args else error
	return inner.str() if hasattr(inner, "str") else str(inner)


class Quiet:
	"""librdkafka logs connection refusals to stderr; the result carries the error instead."""

	def log(self, *args, **kwargs) -> None:
		pass
