"""Redis signals between the after-commit path, the drainer and the sweeper, on the queue Redis
(`frappe.conf.redis_queue`, where RQ lives; docs/architecture.md, "Wake-up, exit and takeover").

The wake-up list holds at most one token: the drainer BLPOPs it, so it wakes within
milliseconds of a commit without polling the database. The heartbeat (owner id) says a
drainer runs, so a commit enqueues one only when it is absent and the sweeper recognises a
dead drainer whose RQ job still says "started". A drainer's alive key lives until it has
given its leases back: the sweeper frees the leases of an owner without one at once, not a
lease later. Both have a short TTL (`HEARTBEAT_SECONDS`), refreshed by a thread beside the
drainer's loop, so a SIGKILLed drainer disappears within seconds and a busy one never does.
`CircuitBreaker` keeps the after-commit path from waiting on a dead Redis again and again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

KEY_PREFIX = "erpnext_streaming"
# the after-commit path: a live Redis answers in about a millisecond
FAST_TIMEOUT_SECONDS = 0.25
# a drainer's keys outlive its process by at most this (refreshed three times as often)
HEARTBEAT_SECONDS = 10
_DELETE_IF_OWNER = (
	"if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)
_EXTEND_IF_OWNER = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end return 0"


def wake_key(site: str) -> str:
	return f"{KEY_PREFIX}|{site}|wake"


def heartbeat_key(site: str) -> str:
	return f"{KEY_PREFIX}|{site}|drainer"


def alive_key(site: str, owner: str) -> str:
	return f"{KEY_PREFIX}|{site}|alive|{owner}"


def stats_key(site: str) -> str:
	return f"{KEY_PREFIX}|{site}|drainer-stats"


def client(url: str, timeout: float, **kwargs: Any):
	"""A Redis client that gives up after `timeout` seconds (connect and each reply), no retries."""
	import redis

	return redis.Redis.from_url(
		url,
		socket_connect_timeout=timeout,
		socket_timeout=timeout,
		retry_on_timeout=False,
		health_check_interval=0,
		**kwargs,
	)


def signal(redis_client: Any, site: str) -> bool:
	"""Leave a wake-up token (at most one waits) and say whether a drainer is running, in
	one round trip."""
	key = wake_key(site)
	pipe = redis_client.pipeline(transaction=False)
	pipe.lpush(key, b"1")
	pipe.ltrim(key, 0, 0)
	pipe.expire(key, 3600)
	pipe.exists(heartbeat_key(site))
	return bool(pipe.execute()[-1])


def drainer_running(redis_client: Any, site: str) -> bool:
	return bool(redis_client.exists(heartbeat_key(site)))


def owner_alive(redis_client: Any, site: str, owner: str) -> bool:
	"""Does the drainer `owner` still live? True when Redis cannot tell (leases then expire)."""
	try:
		return bool(redis_client.exists(alive_key(site, owner)))
	except Exception:
		return True


class RedisWake:
	"""The drainer's wake source: BLPOP on the site's wake list."""

	def __init__(self, redis_client: Any, site: str):
		self.client = redis_client
		self.key = wake_key(site)

	def wait(self, timeout: float) -> bool:
		"""True when woken by a token; False on timeout. Falls back to sleeping when Redis
		is unreachable (the drainer then polls the database)."""
		if timeout <= 0:
			return False
		try:
			return self.client.blpop([self.key], timeout=max(timeout, 0.01)) is not None
		except Exception:
			time.sleep(min(timeout, 1.0))
			return False

	def clear(self) -> None:
		with contextlib.suppress(Exception):
			self.client.delete(self.key)

	def pending(self) -> bool:
		try:
			return bool(self.client.llen(self.key))
		except Exception:
			return False


class RedisHeartbeat:
	"""The running drainer's presence keys, kept fresh by a daemon thread (a long flush or
	claim never lets them lapse; a killed process does within `ttl`). Redis errors never
	stop the drainer: leases in the database keep delivery correct without it."""

	def __init__(self, redis_client: Any, site: str, owner: str, ttl: float = HEARTBEAT_SECONDS):
		self.client = redis_client
		self.key = heartbeat_key(site)
		self.alive = alive_key(site, owner)
		self.owner = owner
		self.ttl_ms = int(ttl * 1000)
		self._held = False
		self._stop = threading.Event()
		self._thread: threading.Thread | None = None

	def acquire(self) -> bool:
		"""Claim the heartbeat; False if another live drainer holds it."""
		if self._thread is None:
			self._beat()
			self._thread = threading.Thread(
				target=self._pulse, name="erpnext-streaming-heartbeat", daemon=True
			)
			self._thread.start()
		try:
			self._held = bool(self.client.set(self.key, self.owner, nx=True, px=self.ttl_ms))
		except Exception:
			self._held = True  # Redis is down: run on the database's leases alone
		return self._held

	def release(self) -> None:
		"""Give up the heartbeat (a commit now enqueues a new drainer); still alive."""
		self._held = False
		with contextlib.suppress(Exception):
			self.client.eval(_DELETE_IF_OWNER, 1, self.key, self.owner)

	def close(self) -> None:
		"""The drainer is gone: its leases are given back (or expire)."""
		self.release()
		self._stop.set()
		with contextlib.suppress(Exception):
			self.client.delete(self.alive)

	def _pulse(self) -> None:
		while not self._stop.wait(self.ttl_ms / 3000):
			self._beat()

	def _beat(self) -> None:
		with contextlib.suppress(Exception):
			pipe = self.client.pipeline(transaction=False)
			pipe.set(self.alive, self.owner, px=self.ttl_ms)
			if self._held:
				pipe.eval(_EXTEND_IF_OWNER, 1, self.key, self.owner, self.ttl_ms)
			pipe.execute()


class CircuitBreaker:
	"""Closed: calls go through. After a failure it opens for `open_seconds` (calls are
	skipped), then lets one call try again. `failure()` returns True only for the first
	failure of an outage, so the caller logs once; `success()` returns True when an outage
	ends."""

	def __init__(self, open_seconds: float, clock: Callable[[], float] = time.monotonic):
		self.open_seconds = open_seconds
		self.clock = clock
		self._open_until = 0.0
		self.failing = False

	def allow(self) -> bool:
		return self.clock() >= self._open_until

	def failure(self) -> bool:
		first = not self.failing
		self.failing = True
		self._open_until = self.clock() + self.open_seconds
		return first

	def success(self) -> bool:
		recovered = self.failing
		self.failing = False
		self._open_until = 0.0
		return recovered
