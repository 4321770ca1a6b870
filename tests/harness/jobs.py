"""Job functions used by harness tests (importable inside RQ work horses)."""

from __future__ import annotations

import os

import redis


def record_pid(redis_url: str, key: str, value: str) -> int:
	"""Write `value` and the work horse's PID to Redis, proving the job ran in a worker."""
	client = redis.Redis.from_url(redis_url)
	client.hset(key, mapping={"value": value, "pid": os.getpid()})
	return os.getpid()
