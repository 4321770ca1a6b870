"""Ask the Kafka cluster who it is: the "Test connection" button and health checks.

Returns plain data (cluster id, controller, brokers, topics) or the exact librdkafka error
text, never the configuration (which may hold the SASL password).
"""

from __future__ import annotations

import re
from typing import Any

DEFAULT_TIMEOUT_SECONDS = 10.0

# librdkafka reports every reconnect; the copies differ only in this suffix
_ATTEMPT_TIMING = re.compile(r"\s*\(after \d+ms in state [A-Z_]+\)")


def describe_cluster(conf: dict[str, str], timeout: float = DEFAULT_TIMEOUT_SECONDS) -> dict[str, Any]:
	"""`{"ok": True, "cluster_id", "controller_id", "brokers", "topics"}` or `{"ok": False, "error"}`."""
	from confluent_kafka import KafkaException
	from confluent_kafka.admin import AdminClient

	errors: list[str] = []
	client_conf = {**conf, "error_cb": lambda err: errors.append(err.str()), "logger": _Quiet()}
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
	return {
		"ok": True,
		"cluster_id": metadata.cluster_id,
		"controller_id": metadata.controller_id,
		"brokers": sorted(f"{b.host}:{b.port}" for b in metadata.brokers.values()),
		"topics": sorted(t for t in metadata.topics if not t.startswith("__")),
	}


def _text(error: Exception) -> str:
	inner = error.args[0] if error.args else error
	return inner.str() if hasattr(inner, "str") else str(inner)


class _Quiet:
	"""librdkafka logs connection refusals to stderr; the result carries the error instead."""

	def log(self, *args, **kwargs) -> None:
		pass
