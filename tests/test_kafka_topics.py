"""Topic expectations on Apache Kafka with `auto.create.topics.enable=false`: `check-connection`
lists the missing topics with what to create them with (exit 1), `create-topics` creates
them through the AdminClient (`--dry-run` creates nothing, a second run nothing more), and
events for a missing topic are held (never Dead, health names the topic) until it is
created, then arrive in order. On three brokers the recommendation is replication factor 3
and `min.insync.replicas` 2.

The drainer runs in a real forking `rq worker`, as in tests/test_kafka_acls.py; the bench
commands run through Click with `connect` replaced by the test's stand-in site.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime

import frappe
import pytest
from click.testing import CliRunner
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from delivery_support import (
	COMPANIES,
	all_delivered,
	assert_company_order,
	by_event_id,
	consume,
	create_topics,
	report_duplicates,
	rows,
	sweeping,
	transactions,
	wait_for,
)
from delivery_support import configure as configure_delivery
from harness.kafka import kafka_cluster, start_kafka
from operations_support import configure

from erpnext_streaming import commands
from erpnext_streaming.constants import Status
from erpnext_streaming.operations import status

pytestmark = pytest.mark.integration

BUILTIN = (
	"gl-entry", "job-card", "payment-entry", "payment-ledger-entry", "sales-invoice", "stock-ledger-entry", "work-order"
)  # fmt: skip


@pytest.fixture(scope="module")
def strict():
	"""One node that never creates a topic on a producer's request."""
	cluster = start_kafka(1, properties={"auto.create.topics.enable": "false"})
	try:
		yield cluster.bootstrap
	finally:
		cluster.stop()


def layout(bootstrap: str, topic: str) -> tuple[int, int, str]:
	"""(partitions, replication factor, min.insync.replicas) as the cluster has them; asked
	until a broker answers for the topic (a new topic reaches each broker's metadata a
	moment after the controller created it)."""
	admin = AdminClient({"bootstrap.servers": bootstrap})

	def described():
		metadata = admin.list_topics(topic, timeout=10).topics[topic]
		if metadata.error is not None or not metadata.partitions:
			return None
		(resource,) = admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)]).values()
		try:
			isr = resource.result(15)["min.insync.replicas"].value
		except KafkaException:
			return None
		replicas = {len(p.replicas) for p in metadata.partitions.values()}
		return len(metadata.partitions), replicas.pop(), isr

	return wait_for(described, 15, f"{topic} in the metadata")


def existing(bootstrap: str) -> set[str]:
	return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_check_connection_lists_missing_topics_and_create_topics_creates_them_once(site, strict, bench):
	create_topics(strict, ("cc.sales-invoice", 2))  # an admin's own topic: left as it is
	configure(bootstrap_servers=strict, topic_prefix="cc", dead_letter_topic="cc.dead-letter")

	result = bench("check-connection")
	print(f"\n$ bench --site SITE streaming check-connection\n{result.stdout}")
	assert result.exit_code == 1, result.output
	recommended = "create with 6 partitions, replication factor 1, min.insync.replicas 1"
	for slug in set(BUILTIN) - {"sales-invoice"}:
		assert f"  cc.{slug}: MISSING, {recommended}\n" in result.stdout
	assert (
		"  cc.dead-letter: MISSING, create with 1 partition, replication factor 1, min.insync.replicas 1\n"
		in result.stdout
	)
	assert (
		"  cc.sales-invoice: present, 2 partitions, replication factor 1, min.insync.replicas 1\n"
		in result.stdout
	)
	assert "7 topic(s) missing: " in result.stdout and "streaming create-topics" in result.stdout
	assert "warning" not in result.stdout  # one broker: replication 1 is all there is

	before = existing(strict)
	result = bench("create-topics", "--dry-run")
	assert result.exit_code == 0, result.output
	assert result.stdout.count("Would create cc.") == 7
	assert "Would create cc.dead-letter: 1 partition, replication factor 1, min.insync.replicas 1\n" in (
		result.stdout
	)
	assert "Exists, left as is: cc.sales-invoice (2 partitions, " in result.stdout
	assert existing(strict) == before, "a dry run creates nothing"

	result = bench("create-topics")
	print(f"$ bench --site SITE streaming create-topics\n{result.stdout}")
	assert result.exit_code == 0, result.output
	assert result.stdout.count("Created cc.") == 7
	assert "Created cc.gl-entry: 6 partitions, replication factor 1, min.insync.replicas 1\n" in result.stdout
	assert layout(strict, "cc.gl-entry") == (6, 1, "1")
	assert layout(strict, "cc.dead-letter") == (1, 1, "1")
	assert layout(strict, "cc.sales-invoice")[0] == 2, "an existing topic is never altered"

	result = bench("create-topics")
	assert result.exit_code == 0, result.output
	assert "Created" not in result.stdout and "Nothing to create" in result.stdout
	result = bench("check-connection")
	assert result.exit_code == 0 and "MISSING" not in result.stdout, result.output


def test_events_for_a_missing_topic_are_held_until_create_topics_creates_it(site, strict, bench, workers):
	topic, dead_letters = "held.gl-entry", "held.dead-letter"
	row = {"document_type": "GL Entry", "enabled": 1, "on_submit": 1, "on_cancel": 1, "topic": topic}
	configure_delivery(
		strict, dead_letters, max_attempts=2, backoff_base_seconds=1, backoff_cap_seconds=2,
		# the app's own timeouts: the missing topic is UNKNOWN_TOPIC_OR_PART after 10 s
		# (topic.metadata.propagation.max.ms), before the 30 s message timeout
		properties={"message.timeout.ms": "30000"},
		settings={"event_catalog": [row]},
	)  # fmt: skip
	workers.start(1)
	written = transactions(topic, 0, 6)

	def held_past_max_attempts() -> bool:
		failed = [r for r in rows() if r.status == Status.FAILED]
		return {r.company for r in failed} == set(COMPANIES) and all(r.attempts > 2 for r in failed)

	wait_for(held_past_max_attempts, 120, "held while the topic is missing")
	log = rows()
	assert {r.status for r in log} == {Status.FAILED, Status.QUEUED}, "held, never Dead"
	failed = [r for r in log if r.status == Status.FAILED]
	assert all("UNKNOWN_TOPIC" in r.last_error and f"topic {topic}" in r.last_error for r in failed), {
		r.last_error for r in failed
	}
	health, reasons = status.assess(status.collect(frappe.db, datetime.now()))
	held = [r for r in reasons if "held until fixed on the cluster" in r]
	assert health != "ok" and {c for c in COMPANIES if any(c in r for r in held)} == set(COMPANIES), reasons
	assert all(f"topic {topic}" in r and "create-topics" in r for r in held), held
	print(
		f"\nwhile {topic} is missing: {len(failed)} Failed (attempts {[r.attempts for r in failed]}), "
		f"{len(log) - len(failed)} Queued behind them, 0 Dead; health: {health}\n  {held[0]}"
	)

	result = bench("create-topics")
	print(f"$ bench --site SITE streaming create-topics\n{result.stdout}")
	assert result.exit_code == 0, result.output
	assert f"Created {topic}: 6 partitions" in result.stdout and f"Created {dead_letters}: 1 partition" in (
		result.stdout
	)
	assert "3 company(ies) held" in result.stdout
	written += transactions(topic, 6, 6)
	wait_for(sweeping(all_delivered), 90, "delivered once the topic exists", interval=1)
	assert {r.status for r in rows()} == {Status.SENT}
	got = consume(strict, topic, expect=len(written), settle=2)
	assert set(by_event_id(got)) == {e.event_id for e in written}, "nothing lost"
	assert not report_duplicates(got, {r.event_id: r for r in rows()})
	assert_company_order(got)
	assert not status.held(frappe.db), "a delivery clears the hold"


def test_on_three_brokers_the_recommendation_is_replication_3_and_min_insync_2(site, bench):
	with kafka_cluster(3, properties={"auto.create.topics.enable": "false"}) as cluster:
		create_topics(cluster.bootstrap, ("three.sales-invoice", 6))  # replication 1: warned
		configure(bootstrap_servers=cluster.bootstrap, topic_prefix="three", dead_letter_topic="three.dlq")
		result = bench("check-connection")
		print(f"\n$ bench --site SITE streaming check-connection (3 brokers)\n{result.stdout}")
		assert result.exit_code == 1, result.output
		assert "  three.gl-entry: MISSING, create with 6 partitions, replication factor 3, " in result.stdout
		assert "  three.dlq: MISSING, create with 1 partition, replication factor 3, " in result.stdout
		missing = [line for line in result.stdout.splitlines() if ": MISSING, " in line]
		assert len(missing) == 7 and all(line.endswith(", min.insync.replicas 2") for line in missing)
		assert (
			"  three.sales-invoice: present, 6 partitions, replication factor 1, min.insync.replicas 2\n"
			in result.stdout
		)
		assert "    warning: replication factor 1 on a cluster of 3 brokers: " in result.stdout
		# the brokers' default min.insync.replicas is 2, which a single replica can never meet
		assert "    warning: min.insync.replicas 2 is above the replication factor 1: " in result.stdout
		assert "    warning: min.insync.replicas 1: " not in result.stdout

		result = bench("create-topics")
		assert result.exit_code == 0, result.output
		assert layout(cluster.bootstrap, "three.gl-entry") == (6, 3, "2")
		assert layout(cluster.bootstrap, "three.dlq") == (1, 3, "2")
