"""The topic recommendation policy (erpnext_streaming/topics.py), without a cluster: what we
recommend for how many brokers, which topics the settings need, when an existing topic is
warned about, and how a refused CreateTopics is explained. On Apache Kafka:
tests/test_kafka_topics.py."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError

from erpnext_streaming import topics
from erpnext_streaming.settings import CatalogRow, StreamingConfig
from erpnext_streaming.topics import Recommendation


@pytest.mark.parametrize(
	("brokers", "replication", "isr"), [(1, 1, 1), (2, 2, 2), (3, 3, 2), (5, 3, 2), (0, 1, 1)]
)
def test_replication_is_min_3_brokers_and_min_insync_is_min_2_replication(brokers, replication, isr):
	assert topics.recommend(brokers) == Recommendation(6, replication, isr)
	assert topics.recommend(brokers, dead_letter=True) == Recommendation(1, replication, isr)


def test_the_needed_topics_are_the_enabled_rows_and_the_dead_letter_topic():
	config = StreamingConfig(
		topic_prefix="acme",
		dead_letter_topic="acme.dlq",
		catalog=(
			CatalogRow("Sales Invoice"),
			CatalogRow("GL Entry", topic="ledger"),
			CatalogRow("Work Order", enabled=False),
			CatalogRow("Job Card", topic="ledger"),  # two rows, one topic
		),
	)
	assert topics.needed(config) == [("acme.dlq", True), ("acme.sales-invoice", False), ("ledger", False)]
	assert topics.needed(StreamingConfig(dead_letter_topic="")) == []


def test_existing_topics_are_described_and_warned_about_only_where_it_matters():
	wanted = [("a", False), ("b", False), ("dlq", True)]
	layout = {
		"a": {"partitions": 12, "replication_factor": 1, "min_insync_replicas": 1},
		"dlq": {"partitions": 1, "replication_factor": 3, "min_insync_replicas": None},
	}
	small = {s.topic: s for s in topics.assess(wanted, layout, brokers=1)}
	assert small["a"].exists and small["a"].partitions == 12 and small["a"].warnings == ()
	assert not small["b"].exists and small["b"].recommended == Recommendation(6, 1, 1)
	assert small["dlq"].as_dict()["recommended"] == {
		"partitions": 1,
		"replication_factor": 1,
		"min_insync_replicas": 1,
	}

	large = {s.topic: s for s in topics.assess(wanted, layout, brokers=3)}
	assert [w.split(":")[0] for w in large["a"].warnings] == [
		"replication factor 1 on a cluster of 3 brokers",
		"min.insync.replicas 1",
	]
	assert large["dlq"].warnings == ()  # min.insync.replicas unknown: no guess
	(above,) = topics.assess(
		[("c", False)], {"c": {"partitions": 6, "replication_factor": 1, "min_insync_replicas": 2}}, 1
	)
	assert above.warnings[0].startswith("min.insync.replicas 2 is above the replication factor 1")


def test_a_refused_create_says_which_acl_is_missing():
	denied = topics.explain_error(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"), "acme.x")
	assert "User:NAME may not create acme.x; grant it the ACL Create on topic acme.x" in denied
	assert "--allow-principal User:NAME --operation Create --topic acme.x" in denied
	assert topics._principal({"security.protocol": "SASL_SSL", "sasl.username": "erp"}) == "User:erp"
	assert topics._principal({"security.protocol": "SSL"}) == "User:NAME"  # a certificate's DN
	cluster = topics.explain_error(KafkaError(KafkaError.CLUSTER_AUTHORIZATION_FAILED, "denied"), "acme.x")
	assert "--operation Create --cluster" in cluster
	assert "left as is" in topics.explain_error(KafkaError(KafkaError.TOPIC_ALREADY_EXISTS, "x"), "t")
	assert topics.explain_error(KafkaError(KafkaError._TIMED_OUT, "slow"), "t") == "_TIMED_OUT: slow"


def test_no_missing_topic_means_no_admin_client():
	state = topics.TopicState("a", False, True, Recommendation(6, 1, 1), 6, 1, 1)
	assert topics.create_missing({"bootstrap.servers": "127.0.0.1:1"}, [state]) == []
