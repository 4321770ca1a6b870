"""Apache Kafka brokers of our own: one for the ordinary tests, three for the cluster tests.

The jars come from Maven Central through `tests/kafka/pom.xml`: `scripts/services` (which
`scripts/test` and `scripts/benchmarks` call) copies them into a git-ignored cache, and
nothing is downloaded here. Each node runs `kafka.Kafka` with `java -cp` in KRaft combined
mode (broker and controller in one process), on free loopback ports, with storage this
module formats itself (`kafka.tools.StorageTool format`) and removes at the end. Nodes are
stopped by PID; a node can be killed, paused, resumed and started again on the same
storage, which is what the broker-failure tests need.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.services import ManagedProcess, _spawn, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[2]
LOG_CONFIG = ROOT / "tests" / "kafka" / "log4j2.properties"
HEAP = os.environ.get("ES_KAFKA_HEAP", "768m")


def library_dir() -> Path:
	return Path(os.environ.get("ES_KAFKA_LIBS") or ROOT / ".cache" / "kafka" / "libs")


def classpath() -> str:
	libs = library_dir()
	if not any(libs.glob("kafka_2.13-*.jar")):
		raise RuntimeError(
			f"Apache Kafka's jars are not in {libs}: run scripts/services (scripts/test does), which "
			"resolves tests/kafka/pom.xml from Maven Central, or set KAFKA_BOOTSTRAP_SERVERS"
		)
	return f"{libs}/*"


def available() -> bool:
	"""A JDK and the cached jars are here (the sandbox's choice between Kafka and Tansu)."""
	try:
		java()
	except RuntimeError:
		return False
	return any(library_dir().glob("kafka_2.13-*.jar"))


def java() -> str:
	home = os.environ.get("JAVA_HOME")
	binary = Path(home, "bin", "java") if home else shutil.which("java")
	if not binary or not Path(binary).exists():
		raise RuntimeError(
			"No Java: Apache Kafka 4 needs a JDK 17 or later (set JAVA_HOME or put java on PATH)"
		)
	return str(binary)


def kafka_version() -> str:
	"""The version of the cached broker jars (kafka_2.13-<version>.jar)."""
	jar = next(library_dir().glob("kafka_2.13-*.jar"), None)
	return jar.stem.removeprefix("kafka_2.13-") if jar else "?"


def java_version() -> str:
	result = subprocess.run([java(), "-version"], capture_output=True, text=True, timeout=30)
	return (result.stderr or result.stdout).splitlines()[0].strip()


def _java_argv(main: str, *args: str) -> list[str]:
	return [
		java(),
		f"-Xmx{HEAP}",
		"-Xms128m",
		"-XX:+UseG1GC",
		"-Djava.awt.headless=true",
		f"-Dlog4j2.configurationFile={LOG_CONFIG}",
		"-cp",
		classpath(),
		main,
		*args,
	]


@dataclass
class Node:
	node_id: int
	port: int
	controller_port: int
	storage: Path
	config: Path
	process: ManagedProcess | None = None

	@property
	def address(self) -> str:
		return f"127.0.0.1:{self.port}"

	@property
	def pid(self) -> int:
		assert self.process is not None, f"node {self.node_id} is not running"
		return self.process.process.pid


@dataclass
class KafkaCluster:
	"""Running Apache Kafka nodes; `bootstrap` names every one of them."""

	nodes: list[Node]
	workdir: Path
	cluster_id: str

	@property
	def bootstrap(self) -> str:
		return ",".join(node.address for node in self.nodes)

	def node(self, node_id: int) -> Node:
		return next(node for node in self.nodes if node.node_id == node_id)

	def start(self, node_id: int) -> None:
		"""Start a node (again) on its own storage, as after a crash or a restart."""
		node = self.node(node_id)
		node.process = _spawn(f"kafka-{node_id}", _java_argv("kafka.Kafka", str(node.config)))

	def kill(self, node_id: int) -> None:
		"""SIGKILL: the node dies without a controlled shutdown."""
		node = self.node(node_id)
		node.process.process.kill()
		node.process.process.wait(timeout=30)

	def stop_node(self, node_id: int) -> None:
		"""SIGTERM: a controlled shutdown, as a rolling restart does."""
		self.node(node_id).process.stop()

	def pause(self, node_id: int) -> None:
		"""SIGSTOP the node and wait until every thread of it has stopped: kill() returns
		before the kernel has stopped a busy JVM's threads, and one still running can answer
		the request a test sends right after the pause."""
		pid = self.node(node_id).pid
		os.kill(pid, signal.SIGSTOP)
		wait_until(lambda: _all_threads_stopped(pid), 5, f"Kafka node {node_id} pausing", interval=0.01)

	def resume(self, node_id: int) -> None:
		os.kill(self.node(node_id).pid, signal.SIGCONT)

	def stop(self) -> None:
		for node in self.nodes:
			if node.process is not None:
				with contextlib.suppress(ProcessLookupError):
					os.kill(node.pid, signal.SIGCONT)
				node.process.stop()
		shutil.rmtree(self.workdir, ignore_errors=True)

	def log_tail(self, lines: int = 40) -> str:
		return "\n".join(
			f"--- node {node.node_id}\n{node.process.log_tail(lines)}" for node in self.nodes if node.process
		)


def _properties(node: Node, voters: str, size: int, extra: dict[str, str]) -> dict[str, str]:
	replicas = str(min(size, 3))
	isr = str(min(size, 2))
	return {
		"process.roles": "broker,controller",
		"node.id": str(node.node_id),
		"controller.quorum.voters": voters,
		"controller.listener.names": "CONTROLLER",
		"inter.broker.listener.name": "PLAINTEXT",
		"listeners": f"PLAINTEXT://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
		"advertised.listeners": f"PLAINTEXT://127.0.0.1:{node.port}",
		"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
		"log.dirs": str(node.storage),
		"num.partitions": "1",
		"default.replication.factor": replicas,
		"min.insync.replicas": isr,
		"offsets.topic.replication.factor": replicas,
		"offsets.topic.num.partitions": "4",
		"transaction.state.log.replication.factor": replicas,
		"transaction.state.log.min.isr": isr,
		"transaction.state.log.num.partitions": "4",
		"group.initial.rebalance.delay.ms": "0",
		"auto.create.topics.enable": "true",
		"unclean.leader.election.enable": "false",
		**extra,
	}


def _format(node: Node, cluster_id: str, format_args: list[str]) -> None:
	# `--cluster-id=` with the value attached: a base64 id may begin with "-", which the
	# tool's argument parser would take for an option
	argv = _java_argv(
		"kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(node.config)
	)
	result = subprocess.run([*argv, *format_args], capture_output=True, text=True, timeout=120)
	if result.returncode != 0:
		raise RuntimeError(f"formatting Kafka storage failed:\n{result.stdout}\n{result.stderr}")


def _brokers_up(cluster: KafkaCluster, size: int, client_config: dict) -> bool:
	"""Every node listens and every broker is in the metadata (a client is made only once
	the ports answer, so a starting node does not fill the log with refused connections)."""
	from confluent_kafka.admin import AdminClient

	if not all(port_open("127.0.0.1", node.port) for node in cluster.nodes):
		return False
	bootstrap = cluster.bootstrap
	metadata = AdminClient({"bootstrap.servers": bootstrap, **client_config}).list_topics(timeout=2)
	return len(metadata.brokers) == size


def start_kafka(
	size: int = 1,
	properties: dict[str, str] | None = None,
	format_args: list[str] | tuple[str, ...] = (),
	node_properties=None,
	client_config: dict | None = None,
) -> KafkaCluster:
	"""Format and start `size` KRaft nodes; returns once every broker is in the metadata.

	`properties` are added to every node's server.properties; `node_properties(node)` may
	return more for one node (its listeners, for TLS); `format_args` go to StorageTool
	(SCRAM users: `--add-scram`); `client_config` is what a client needs to ask for metadata.
	"""
	workdir = Path(tempfile.mkdtemp(prefix="es-kafka-"))
	nodes = [
		Node(i, free_port(), free_port(), workdir / f"data-{i}", workdir / f"server-{i}.properties")
		for i in range(1, size + 1)
	]
	voters = ",".join(f"{n.node_id}@127.0.0.1:{n.controller_port}" for n in nodes)
	cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
	cluster = KafkaCluster(nodes, workdir, cluster_id)
	try:
		for node in nodes:
			values = _properties(node, voters, size, {**(properties or {})})
			values.update(node_properties(node) if node_properties else {})
			node.config.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
			_format(node, cluster.cluster_id, list(format_args))
		for node in nodes:
			cluster.start(node.node_id)
		wait_until(
			lambda: _brokers_up(cluster, size, client_config or {}),
			90,
			f"Apache Kafka ({size} node{'s' if size > 1 else ''}) on {cluster.bootstrap}",
			interval=0.3,
		)
	except BaseException as e:
		tail = cluster.log_tail()
		cluster.stop()
		if isinstance(e, TimeoutError):
			raise TimeoutError(f"{e}\n{tail}") from None
		raise
	return cluster


@contextlib.contextmanager
def kafka_cluster(size: int = 1, **options) -> Iterator[KafkaCluster]:
	cluster = start_kafka(size, **options)
	try:
		yield cluster
	finally:
		cluster.stop()


def _all_threads_stopped(pid: int) -> bool:
	"""Is every thread of `pid` stopped (state T in /proc/PID/task/*/stat, proc(5))?"""
	states = []
	for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
		with contextlib.suppress(OSError):  # a thread that ended meanwhile
			states.append(stat.read_text().rpartition(")")[2].split()[0])
	return bool(states) and all(state in ("T", "t") for state in states)
