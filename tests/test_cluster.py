"""Test connection: cluster metadata from a real broker, or the exact error."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from harness.services import free_port

from erpnext_streaming.cluster import describe_cluster

pytestmark = pytest.mark.integration


def test_reachable_cluster_reports_id_brokers_and_topics(kafka_bootstrap):
	topic = f"conn-{uuid.uuid4().hex[:8]}"
	admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
	admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
	result = describe_cluster({"bootstrap.servers": kafka_bootstrap}, timeout=10)
	assert result["ok"] is True
	assert result["cluster_id"]
	assert result["brokers"] == [kafka_bootstrap]
	assert topic in result["topics"]


def test_unreachable_cluster_reports_the_librdkafka_error():
	result = describe_cluster({"bootstrap.servers": f"127.0.0.1:{free_port()}"}, timeout=2)
	assert result["ok"] is False
	assert "timed out" in result["error"].lower() or "refused" in result["error"].lower(), result["error"]


def test_invalid_configuration_is_reported_not_raised():
	result = describe_cluster({"bootstrap.servers": "127.0.0.1:1", "security.protocol": "CARRIER_PIGEON"})
	assert result["ok"] is False
	assert "security.protocol" in result["error"]
