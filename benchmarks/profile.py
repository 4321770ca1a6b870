"""Where the time goes (issue "Benchmarks": profile before optimising): a cProfile run of
the P1 capture path and of the P3 drainer, summed into named parts of the work."""

from __future__ import annotations

import cProfile
import pstats
from collections.abc import Callable, Sequence

# P1: own time (tottime) by the module it is spent in
CAPTURE_PARTS: Sequence[tuple[str, Sequence[str]]] = (
	("Avro encode (fastavro)", ("schemas/serializer.py", "fastavro")),
	("payload build (compiled builders, masking)", ("emitters/builders/",)),
	("envelope (ids, times, schema identity)", ("emitters/envelope.py", "uuid", "schemas/registry.py")),
	("hook entry + catalog lookup (flags, cache)", ("emitters/handler.py", "catalog.py", "standin/frappe")),
	("capture buffer, coalescing, outbox record", ("emitters/capture.py", "emitters/codec.py", "outbox/")),
)

WAITING = "waiting for work (wake-up)"
# P3: cumulative time of the drainer's steps (disjoint: none calls another)
DRAINER_STEPS: Sequence[tuple[str, Sequence[tuple[str, str]]]] = (
	("claim: companies, their bundles after the cursors, cursor leases", (("delivery/bundles.py", "claim"),)),
	("claim: named lock, dead-letter scan, claim COMMIT", (("outbox/mariadb.py", "get_lock"), ("outbox/mariadb.py", "release_lock"), ("outbox/outcomes.py", "claim_dead_letters"))),
	("messages from the bundles (JSON parse, values, headers, framing)", (("delivery/messages.py", "read"),)),
	("produce (hand the batch to librdkafka)", (("delivery/producer.py", "start"),)),
	("acks: bounded flush + delivery reports (after the next claim)", (("delivery/producer.py", "finish"),)),
	("record: the receipt, cursors moved (a failed batch: retry state, Failed / Dead)", (("delivery/bundles.py", "record_delivered"), ("delivery/bundles.py", "record_retry"), ("outbox/outcomes.py", "mark_unsent"))),
	("settle: receipts into the Event Log (rows Sent), after the drain", (("delivery/bundles.py", "settle"),)),
	("COMMITs", (("sandbox/delivery.py", "commit"),)),
	(WAITING, (("delivery/signals.py", "wait"), ("delivery/wake.py", "wait"))),
)  # fmt: skip


def _percent(parts: dict[str, float], total: float) -> dict[str, float]:
	return {k: round(100 * v / total, 1) for k, v in parts.items()} if total else {}


def _part(filename: str, function: str) -> str:
	where = f"{filename}:{function}"
	for name, needles in CAPTURE_PARTS:
		if any(n in where for n in needles):
			return name
	return "other"


def capture_breakdown(run: Callable[[], object]) -> dict[str, float]:
	"""Percent of the own time of `run` spent in each part of the capture path. Time in
	built-ins (dict.get, isinstance, ...) counts for the part of the function calling them."""
	profiler = cProfile.Profile()
	profiler.runcall(run)
	stats = pstats.Stats(profiler).stats
	parts = dict.fromkeys([name for name, _ in CAPTURE_PARTS] + ["other"], 0.0)
	for (filename, _, function), (_, _, tottime, _, callers) in stats.items():
		if filename != "~" or not callers:
			parts[_part(filename, function)] += tottime
			continue
		shares = {caller: timing[2] for caller, timing in callers.items()}
		total = sum(shares.values()) or 1.0
		for (caller_file, _, caller_function), share in shares.items():
			parts[_part(caller_file, caller_function)] += tottime * share / total
	return _percent(parts, sum(parts.values()))


# the drainer's thread, by what it runs or waits on: own time of these built-ins
RESOURCES: Sequence[tuple[str, Sequence[str]]] = (
	("waiting on MariaDB (socket reads; the server's work)", ("'recv_into'",)),
	("waiting on the broker (bounded flush, polls)", ("'flush' of 'cimpl", "'poll' of 'cimpl")),
	("librdkafka produce (C, per message)", ("'produce' of 'cimpl",)),
)


def drainer_breakdown(run: Callable[[], object]) -> tuple[dict[str, float], dict[str, float]]:
	"""Percent of the drainer's busy time (its wall time minus waiting for work, which is
	only its idle exit here) in each of its steps; and the same busy time by what the
	thread runs or waits on (`RESOURCES`; the rest is Python, PyMySQL's row parsing included)."""
	profiler = cProfile.Profile()
	profiler.runcall(run)
	stats = pstats.Stats(profiler).stats
	total = max((cum for (_, _, fn), (_, _, _, cum, _) in stats.items() if fn == "run"), default=0.0)
	parts = {}
	for name, functions in DRAINER_STEPS:
		parts[name] = sum(
			cum
			for (filename, _, fn), (_, _, _, cum, _) in stats.items()
			if any(filename.endswith(f) and fn == want for f, want in functions)
		)
	busy = total - parts.pop(WAITING)
	parts["other (loop, heartbeat, bookkeeping)"] = max(busy - sum(parts.values()), 0.0)
	resources = dict.fromkeys([name for name, _ in RESOURCES], 0.0)
	for (filename, _, fn), (_, _, tottime, _, callers) in stats.items():
		for name, methods in RESOURCES:
			if filename != "~" or not any(m in fn for m in methods):
				continue
			if "'recv_into'" in fn:  # PyMySQL's reads only: Redis (the idle wait) reads elsewhere
				calls = {caller: timing[3] for caller, timing in callers.items()}
				share = sum(t for caller, t in calls.items() if "redis" not in caller[0])
				tottime *= share / (sum(calls.values()) or 1.0)
			resources[name] += tottime
	resources["Python (the drainer, PyMySQL's parsing)"] = max(busy - sum(resources.values()), 0.0)
	return _percent(parts, busy), _percent(resources, busy)
