"""The after-commit wake-up (Frappe glue): `after_commit()` runs in `frappe.db.after_commit`
after the capture flush wrote rows (or a requeue changed rows).

It pushes a wake token and, in the same round trip, reads the drainer's heartbeat, and
enqueues a drainer only when none runs. It NEVER raises (the request's data is already
committed, an exception would be a 500) and never waits long on a dead Redis (0.25 s
timeouts, then a circuit breaker); rows written meanwhile stay Queued for the sweeper.
"""

from __future__ import annotations

import contextlib
from typing import Any

import frappe

from erpnext_streaming.delivery import signals

BREAKER_SECONDS = 30.0
LOGGER = "erpnext_streaming"

breaker = signals.CircuitBreaker(BREAKER_SECONDS)
_clients: dict[tuple, Any] = {}


def after_commit() -> None:
	try:
		if not breaker.allow():
			return
		_wake()
	except Exception as e:
		_failed(e)
	else:
		if breaker.success():
			_log("info", "erpnext_streaming: Redis is reachable again; the drainer is signalled")


def _wake() -> None:
	from erpnext_streaming.delivery import jobs

	if not signals.signal(_client(), frappe.local.site):
		jobs.enqueue_drainer()


def _client():
	from erpnext_streaming.delivery import jobs

	key = (frappe.conf.redis_queue, frappe.conf.get("use_rq_auth"))
	client = _clients.get(key)
	if client is None:
		client = _clients[key] = jobs.queue_redis(timeout=signals.FAST_TIMEOUT_SECONDS)
	return client


def _failed(error: Exception) -> None:
	with contextlib.suppress(Exception):
		if breaker.failure():
			_log(
				"warning",
				f"erpnext_streaming: cannot signal the drainer ({type(error).__name__}: {error}); "
				f"Redis is skipped for {breaker.open_seconds:g} s, committed events wait in the outbox "
				"for the sweeper",
			)


def _log(level: str, message: str) -> None:
	with contextlib.suppress(Exception):
		getattr(frappe.logger(LOGGER), level)(message)
