"""A 3-broker Apache Kafka cluster loses a broker, restarts, stalls and loses its quorum
while users commit: nothing is lost, nothing is Dead, order holds.

The cluster (tests/harness/kafka.py): three KRaft nodes, each broker and controller,
topics with replication factor 3 and `min.insync.replicas=2`; the app's own producer
defaults (idempotent, acks=all, message.timeout.ms 30 s). The drainer runs in a real
forking `rq worker`; the sweeper runs as the scheduler would. Each scenario commits
transactions before, during and after the fault, then checks: every committed event is in
Kafka, per-company order and sequences are gapless, no event is Dead, the Event Log is
settled; and prints the figures (committed, delivered, duplicates, Dead, the time from
recovery until everything was delivered).

Duplicates: the idempotent producer's own retries add none; a lost leader, a rolling
restart and a stalled broker all end with every event exactly once. Only the quorum loss
can cost copies: its messages time out (message.timeout.ms) while no quorum can
acknowledge them, the drainer sends them again with a new producer, and one that did reach
the surviving leader's log before the timeout is then in Kafka twice. That is
at-least-once's price, bounded by the events committed during the outage, each at most
one extra copy.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import AdminClient
from delivery_support import (
	COMPANIES,
	all_delivered,
	assert_company_order,
	by_event_id,
	configure,
	consume,
	drainer_stats,
	java_partition,
	new_topic,
	report_duplicates,
	rows,
	sweeping,
	transactions,
	wait_for,
)
from harness.kafka import KafkaCluster, start_kafka

from erpnext_streaming.constants import Status
from erpnext_streaming.kafka_properties import DEFAULT_PRODUCER_PROPERTIES

pytestmark = pytest.mark.integration

BATCH = 20
FAULT_SECONDS = 60
COMMIT_INTERVAL = 0.5


@pytest.fixture(scope="module")
def cluster():
	cluster = start_kafka(3)
	try:
		yield cluster
	finally:
		cluster.stop()


class Load:
	"""Transactions committed by a user, numbered on; `during(seconds)` keeps committing."""

	def __init__(self, topic: str):
		self.topic = topic
		self.written: list = []
		self.transactions = 0

	def commit(self, count: int = 1) -> None:
		self.written += transactions(self.topic, self.transactions, count)
		self.transactions += count

	def during(self, seconds: float, until=None) -> None:
		"""Commit one transaction every COMMIT_INTERVAL for `seconds`, or until `until()`."""
		deadline = time.monotonic() + seconds
		while time.monotonic() < deadline:
			self.commit()
			if until is not None and until():
				return
			time.sleep(COMMIT_INTERVAL)
		if until is not None:
			raise AssertionError(f"not within {seconds} s: {until.__doc__}")


def leader_of(cluster: KafkaCluster, topic: str, company: str) -> int:
	metadata = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=10)
	partitions = metadata.topics[topic].partitions
	return partitions[java_partition(company.encode(), len(partitions))].leader


def fully_replicated(cluster: KafkaCluster, topic: str):
	def check() -> bool:
		"""every partition has all three replicas in sync"""
		try:
			metadata = AdminClient({"bootstrap.servers": cluster.bootstrap}).list_topics(topic, timeout=5)
		except Exception:
			return False
		partitions = metadata.topics[topic].partitions.values()
		return len(metadata.brokers) == 3 and all(len(p.isrs) == 3 and p.leader >= 0 for p in partitions)

	return check


def start_scenario(cluster, workers) -> Load:
	topic = new_topic(cluster.bootstrap, replication=3)
	dead_letters = new_topic(cluster.bootstrap, 1, replication=3)
	wait_for(fully_replicated(cluster, topic), 60, "the topic fully replicated")
	# the app's own message timeout (kafka_properties.DEFAULT_PRODUCER_PROPERTIES), not the
	# short one the other delivery tests use
	configure(
		cluster.bootstrap, dead_letters, batch_size=BATCH, idle_exit_seconds=30,
		properties={"message.timeout.ms": DEFAULT_PRODUCER_PROPERTIES["message.timeout.ms"]},
	)  # fmt: skip
	workers.start(1)
	load = Load(topic)
	load.commit(6)
	wait_for(lambda: any(r.status == Status.SENT for r in rows()), 60, "delivery before the fault")
	return load


def finish_scenario(cluster, load: Load, name: str, recovered_at: float, max_duplicates: int = 0) -> None:
	load.commit(6)
	wait_for(sweeping(all_delivered), 240, f"{name}: everything delivered after recovery", interval=1)
	delay = time.monotonic() - recovered_at
	log = {r.event_id: r for r in rows()}
	dead = sum(r.status == Status.DEAD for r in log.values())
	got = consume(cluster.bootstrap, load.topic, expect=len(load.written), timeout=60, settle=3)
	delivered = by_event_id(got)
	duplicates = report_duplicates(got, log)
	stats = drainer_stats()
	print(
		f"{name}: committed {len(load.written)} events, delivered {len(delivered)}, "
		f"duplicates {sum(duplicates.values())}, Dead {dead}, everything delivered "
		f"{delay:.1f} s after recovery; failed batches {stats.get('failed_batches', 0)}"
	)
	assert set(delivered) == {e.event_id for e in load.written}, "nothing lost"
	assert dead == 0 and {r.status for r in log.values()} == {Status.SENT}
	assert_company_order(got)
	assert sum(duplicates.values()) <= max_duplicates and all(n == 1 for n in duplicates.values()), duplicates


def test_the_leader_of_a_companys_partition_is_killed_and_comes_back(site, cluster, workers):
	load = start_scenario(cluster, workers)
	leader = leader_of(cluster, load.topic, COMPANIES[0])
	cluster.kill(leader)  # SIGKILL: no controlled shutdown
	load.during(20)
	cluster.start(leader)
	recovered = time.monotonic()
	load.during(90, until=fully_replicated(cluster, load.topic))
	finish_scenario(cluster, load, f"leader {leader} SIGKILLed", recovered)


def test_a_rolling_restart_of_all_three_brokers(site, cluster, workers):
	load = start_scenario(cluster, workers)
	for node in cluster.nodes:
		cluster.stop_node(node.node_id)  # SIGTERM: a controlled shutdown
		load.during(3)
		cluster.start(node.node_id)
		load.during(90, until=fully_replicated(cluster, load.topic))
	finish_scenario(cluster, load, "rolling restart", time.monotonic())


def test_one_broker_stops_answering_for_a_minute(site, cluster, workers):
	load = start_scenario(cluster, workers)
	paused = leader_of(cluster, load.topic, COMPANIES[1])
	cluster.pause(paused)  # SIGSTOP: connections stay open, nothing answers
	try:
		load.during(FAULT_SECONDS)
	finally:
		cluster.resume(paused)
	recovered = time.monotonic()
	load.during(90, until=fully_replicated(cluster, load.topic))
	finish_scenario(cluster, load, f"broker {paused} SIGSTOPped {FAULT_SECONDS} s", recovered)


def test_two_brokers_down_for_a_minute_then_back(site, cluster, workers):
	load = start_scenario(cluster, workers)
	down = [n.node_id for n in cluster.nodes[1:]]
	before = len(load.written)
	for node_id in down:
		cluster.kill(node_id)  # no quorum: the controller and min.insync.replicas=2 both lost
	load.during(FAULT_SECONDS)
	in_doubt = len(load.written) - before
	during = {r.status for r in rows()}
	assert Status.DEAD not in during, "no quorum is retriable, never Dead"
	for node_id in down:
		cluster.start(node_id)
	recovered = time.monotonic()
	load.during(120, until=fully_replicated(cluster, load.topic))
	# an event written during the outage may have reached the surviving leader's log, its
	# acknowledgement never coming; the drainer sends it again after its message timeout
	finish_scenario(cluster, load, f"quorum lost {FAULT_SECONDS} s", recovered, max_duplicates=in_doubt)
