"""The after-commit wake-up (Frappe glue): `after_commit()` runs in `frappe.db.after_commit`
after the capture flush wrote rows (or a requeue changed rows).

It pushes a token to the site's wake-up list and, in the same round trip, reads the
drainer's heartbeat; only when no drainer is running does it enqueue one (deduplicated
job id, so a queued one is not queued twice). It NEVER raises: an exception here would
surface as a 500 on a request whose data is already committed. It never waits long on a
dead Redis either: 0.25 s socket timeouts, and after a failure a circuit breaker skips
Redis for `BREAKER_SECONDS` (the failure is logged once per outage). Rows written
meanwhile stay Queued; the sweeper delivers them once Redis is back.
"""

from __future__ import annotations

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
	try:
		if breaker.failure():
			_log(
				"warning",
				f"erpnext_streaming: cannot signal the drainer ({type(error).__name__}: {error}); "
				f"Redis is skipped for {breaker.open_seconds:g} s, committed events wait in the outbox "
				"for the sweeper",
			)
	except Exception:
		pass


def _log(level: str, message: str) -> None:
	try:
		getattr(frappe.logger(LOGGER), level)(message)
	except Exception:
		pass
