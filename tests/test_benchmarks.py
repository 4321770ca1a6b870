"""The benchmark harness runs end to end and writes a well-formed result (issue
"Benchmarks"). Not a timing test: `--tiny` numbers mean nothing; only their shape and the
exit status's agreement with the gates are checked."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def run_benchmarks(tmp_path, kafka_bootstrap, redis_url, *args):
	env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "REDIS_URL": redis_url}
	return subprocess.run(
		[sys.executable, "-m", "benchmarks", "--tiny", "--out", str(tmp_path), *args],
		cwd=REPO,
		env=env,
		capture_output=True,
		text=True,
		timeout=300,
	)


def test_a_tiny_run_writes_json_and_markdown_and_judges_nothing(tmp_path, kafka_bootstrap, redis_url):
	"""`--tiny` is a harness check: its numbers mean nothing, so no gate passes or misses."""
	done = run_benchmarks(tmp_path, kafka_bootstrap, redis_url, "--only", "P1b,P3,P4,P6")
	assert done.returncode == 0, done.stdout + done.stderr
	result = json.loads((tmp_path / "tiny.json").read_text())
	assert result["mode"] == "tiny"
	assert {"date", "machine", "python", "confluent_kafka", "broker", "redis", "mariadb"} <= set(
		result["environment"]
	)
	assert [s["id"] for s in result["scenarios"]] == ["P1b", "P3", "P4", "P6"]
	measured = [g for s in result["scenarios"] for g in s["gates"] if g["value"] is not None]
	assert {g["id"] for g in measured} == {"P1b", "P3", "P4"}
	for gate in measured:
		assert math.isfinite(gate["value"]) and gate["value"] > 0, gate
		assert gate["judged"] is False and gate["passed"] is None, gate
	p6 = result["scenarios"][3]
	assert p6["gates"][0]["value"] is None and "cannot be paused" in p6["notes"][0]  # an external broker
	p3 = result["scenarios"][1]["measurements"]
	assert p3["drainer_stats_last_round"]["sent"] == p3["events_per_round"]
	assert p3["raw_producer_msgs_per_s"]["median"] > 0
	# 300 events drain in one batch: no sustained window, and the summary says so
	assert "needs at least 3" in result["scenarios"][1]["notes"][0]
	assert result["passed"] is True and result["missed"] == []
	assert "MISSED" not in done.stdout + done.stderr
	summary = (tmp_path / "tiny.md").read_text()
	assert "## Gates" in summary and result["environment"]["mariadb"] in summary
	for gate in measured:
		assert f"| {gate['id']} | {gate['what']} |" in summary
		assert f"| {gate['id']} | {gate['what']} |" in done.stdout
	assert "| information |" in done.stdout


def test_an_unknown_scenario_is_refused_with_the_list_of_known_ones(tmp_path, kafka_bootstrap, redis_url):
	done = run_benchmarks(tmp_path, kafka_bootstrap, redis_url, "--only", "P2")
	assert done.returncode == 2
	assert "unknown scenario(s) P2" in done.stderr and "P1, P1b, P3" in done.stderr
	assert not (tmp_path / "tiny.json").exists()


@pytest.mark.parametrize("only", [",", " , ,"])
def test_an_only_that_names_no_scenario_is_refused_not_taken_for_all(
	tmp_path, kafka_bootstrap, redis_url, only
):
	done = run_benchmarks(tmp_path, kafka_bootstrap, redis_url, "--only", only)
	assert done.returncode == 2
	assert "--only names no scenario" in done.stderr
	assert not (tmp_path / "tiny.json").exists()


def test_p1_is_information_and_judged_gates_still_decide(tmp_path):
	from benchmarks.run import _verdict
	from benchmarks.stats import Gate

	info = Gate("P1", "capture ÷ raw Avro", 9.9, 1.5, "<=", judged=False)
	assert info.passed is None and info.margin == "" and _verdict(info) == "information"
	missed = Gate("P3", "drainer ÷ raw producer", 0.1, 0.25, ">=")
	assert missed.passed is False and _verdict(missed) == "**MISSED**"


def _databases(mariadb: dict) -> set[str]:
	import pymysql

	params = {k: v for k, v in mariadb.items() if k in ("host", "port", "user", "password")}
	conn = pymysql.connect(**params)
	try:
		with conn.cursor() as cur:
			cur.execute("SHOW DATABASES LIKE 'es\\_bench\\_%'")
			return {row[0] for row in cur.fetchall()}
	finally:
		conn.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_run_leaves_no_process_database_or_key(
	tmp_path, kafka_bootstrap, redis_url, mariadb, signum
):
	"""SIGTERM (a `timeout`, a cancelled CI job) or Ctrl-C while P3 drains: the run removes
	its rq worker and work horse, its database and its Redis keys, and exits."""
	import redis

	url = f"mysql://{mariadb['user']}:{mariadb['password']}@{mariadb['host']}:{mariadb['port']}"
	before = _databases(mariadb)
	env = {
		**os.environ,
		"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
		"REDIS_URL": redis_url,
		"MARIADB_URL": url,
	}
	run = subprocess.Popen(
		[sys.executable, "-m", "benchmarks", "--tiny", "--only", "P3", "--out", str(tmp_path)],
		cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
	)  # fmt: skip
	deadline = time.monotonic() + 120
	while not (_databases(mariadb) - before) and time.monotonic() < deadline and run.poll() is None:
		time.sleep(0.2)
	(database,) = _databases(mariadb) - before
	run_id = database.split("_")[2]
	time.sleep(2)  # into the scenario: the worker runs, the outbox fills
	run.send_signal(signum)
	output = run.communicate(timeout=120)[0]
	assert run.returncode == 130, output
	assert f"stopped by {signal.Signals(signum).name}" in output
	assert _databases(mariadb) == before, "its database was dropped"
	assert not list(redis.Redis.from_url(redis_url).scan_iter(match=f"*{run_id}*")), "its keys were removed"
	leftover = subprocess.run(["pgrep", "-f", run_id], capture_output=True, text=True).stdout.split()
	assert not leftover, f"processes of the run still alive: {leftover}"
