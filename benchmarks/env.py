"""The real services a benchmark runs on, found or started as the test suite does
(README "How the tests find services"), and the environment line of a result.

Kafka: KAFKA_BOOTSTRAP_SERVERS, else one Apache Kafka node started here from the jars
scripts/services resolved (tests/harness/kafka.py; kept, so the outage scenario can pause it). Redis: REDIS_URL, the
local server, or one started here. MariaDB: MARIADB_URL, the local server, or one started
here; every run gets its own database with the app's tables and the ERPNext subset the
capture flush reads, dropped at the end. RQ workers are real `rq worker` processes that
fork a work horse per job, as Frappe's do.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOGS = Path(__file__).resolve().parent / "results" / "logs"
TESTS = REPO / "tests"
for _path in (TESTS, TESTS / "standin", REPO):  # the harness, the `frappe` stand-in, `sandbox`
	if str(_path) not in sys.path:
		sys.path.insert(0, str(_path))

import pymysql
from confluent_kafka.admin import AdminClient, NewTopic
from frappe import standin
from harness import services
from harness.erpnext_tables import ERPNEXT_TABLES
from harness.kafka import KafkaCluster, java_version, kafka_version, start_kafka
from harness.schema import create_app_tables, doctype_jsons
from harness.worker import child_pids, kill_tree, worker_env

# frappe.get_meta of the stand-in knows the app's doctypes and the ERPNext subset (the
# before_commit flush reads the child tables of what it completes), as in tests/conftest.py
for _definition in (*doctype_jsons().values(), *ERPNEXT_TABLES):
	standin.register_doctype(_definition)


@dataclass
class Services:
	bootstrap: str
	redis_url: str
	mariadb: dict
	broker: KafkaCluster | None = None  # None: an external cluster (cannot be paused)
	run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

	def pause_broker(self) -> None:
		self.broker.pause(1)

	def resume_broker(self) -> None:
		self.broker.resume(1)

	@contextlib.contextmanager
	def database(self) -> Iterator[dict]:
		"""A fresh database with the app's tables and ERPNext's; its connection parameters."""
		name = f"es_bench_{self.run_id}_{uuid.uuid4().hex[:6]}"
		admin = pymysql.connect(autocommit=True, **self.mariadb)
		with admin.cursor() as cur:
			cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
		try:
			conn = pymysql.connect(autocommit=True, database=name, **self.mariadb)
			with conn.cursor() as cur:
				create_app_tables(cur, ERPNEXT_TABLES)
			conn.close()
			yield {**self.mariadb, "database": name}
		finally:
			with admin.cursor() as cur:
				cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
			admin.close()

	@property
	def replication(self) -> int:
		"""Replication factor of the topics a benchmark creates: 3 on a 3-node cluster."""
		return min(3, len(self.broker.nodes)) if self.broker else 1

	def topics(self, *names: str, partitions: int = 3) -> None:
		admin = AdminClient({"bootstrap.servers": self.bootstrap})
		new = [NewTopic(t, num_partitions=partitions, replication_factor=self.replication) for t in names]
		for future in admin.create_topics(new).values():
			future.result(30)

	@contextlib.contextmanager
	def worker(self, queue: str) -> Iterator[subprocess.Popen]:
		"""One forking `rq worker` on `queue` (output in a log file), stopped with its work
		horse at the end."""
		argv = [sys.executable, "-W", "ignore", "-c", "import sys; from rq.cli import main; sys.exit(main())",
			"worker", "--url", self.redis_url, "--logging_level", "WARNING", "--name", f"{queue}-w", queue]  # fmt: skip
		log = LOGS / f"{queue.replace(':', '-')}.log"
		log.parent.mkdir(parents=True, exist_ok=True)
		with log.open("ab") as out:
			proc = subprocess.Popen(argv, env=worker_env(), stdout=out, stderr=out, start_new_session=True)
		try:
			yield proc
		finally:
			with contextlib.suppress(subprocess.TimeoutExpired):
				kill_tree(proc)

	def clean_redis(self) -> None:
		import redis

		client = redis.Redis.from_url(self.redis_url)
		for key in client.scan_iter(match=f"*{self.run_id}*"):
			client.delete(key)
		for key in ("rq:workers", "rq:queues"):
			for member in client.smembers(key):
				if self.run_id.encode() in member:
					client.srem(key, member)


class Stopped(BaseException):
	"""SIGINT or SIGTERM: raised in the main thread so every `with` block unwinds and removes
	what it started. A BaseException, so no scenario's `except Exception` swallows it."""


@contextlib.contextmanager
def stopping_on_signals() -> Iterator[None]:
	"""The first SIGINT or SIGTERM raises `Stopped`; later ones are ignored until the
	clean-up (broker, workers, databases, Redis keys) has finished."""

	def stop(signum, frame):
		for sig in (signal.SIGINT, signal.SIGTERM):
			signal.signal(sig, signal.SIG_IGN)
		raise Stopped(signal.Signals(signum).name)

	previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
	try:
		yield
	finally:
		for sig, handler in previous.items():
			signal.signal(sig, handler)


@contextlib.contextmanager
def started(brokers: int = 1) -> Iterator[Services]:
	broker = None
	with contextlib.ExitStack() as stack:
		if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
			bootstrap = stack.enter_context(services.kafka_broker())
		else:
			broker = start_kafka(brokers)
			stack.callback(broker.stop)
			bootstrap = broker.bootstrap
		redis_url = stack.enter_context(services.redis_server())
		mariadb = stack.enter_context(services.mariadb_server())
		found = Services(bootstrap, redis_url, mariadb, broker)
		try:
			yield found
		finally:
			found.clean_redis()


def _version(dist: str) -> str:
	try:
		return metadata.version(dist)
	except metadata.PackageNotFoundError:
		return "-"


def _cpu() -> str:
	with contextlib.suppress(OSError):
		for line in Path("/proc/cpuinfo").read_text().splitlines():
			if line.startswith("model name"):
				return line.split(":", 1)[1].strip()
	return platform.processor() or "?"


def describe(found: Services) -> dict:
	"""The environment line: machine, interpreter, libraries and services of this run."""
	import confluent_kafka
	import redis

	conn = pymysql.connect(**found.mariadb)
	with conn.cursor() as cur:
		cur.execute("SELECT VERSION()")
		mariadb_version = cur.fetchone()[0]
	conn.close()
	redis_version = redis.Redis.from_url(found.redis_url).info().get("redis_version", "?")
	return {
		"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
		"machine": f"{platform.machine()}, {os.cpu_count()} CPUs ({_cpu()}), Linux {platform.release()}",
		"python": platform.python_version(),
		"confluent_kafka": f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})",
		"fastavro": _version("fastavro"),
		"rq": _version("rq"),
		"broker": (
			f"Apache Kafka {kafka_version()} ({_nodes(found.broker)}, {java_version()}) on {found.bootstrap}"
			if found.broker
			else f"external Kafka at {found.bootstrap}"
		),
		"redis": f"{redis_version} at {found.redis_url}",
		"mariadb": f"{mariadb_version} at {found.mariadb['host']}:{found.mariadb['port']}",
	}


def _nodes(cluster: KafkaCluster) -> str:
	if len(cluster.nodes) == 1:
		return "one KRaft node"
	return f"{len(cluster.nodes)} KRaft nodes, replication factor 3, min.insync.replicas 2, acks=all"


def line(env: dict) -> str:
	return "; ".join(f"{k} {v}" for k, v in env.items())
