"""The benchmark harness runs end to end and writes a well-formed result (issue
"Benchmarks"). Not a timing test: `--tiny` numbers mean nothing; only their shape and the
exit status's agreement with the gates are checked."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
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


def test_a_tiny_run_writes_json_and_markdown_whose_gates_decide_the_exit_status(
	tmp_path, kafka_bootstrap, redis_url
):
	done = run_benchmarks(tmp_path, kafka_bootstrap, redis_url, "--only", "P1b,P3,P4,P6")
	assert done.returncode in (0, 1), done.stdout + done.stderr
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
		assert gate["passed"] == (
			gate["value"] <= gate["target"] if gate["op"] == "<=" else gate["value"] >= gate["target"]
		)
	p6 = result["scenarios"][3]
	assert p6["gates"][0]["value"] is None and "cannot be paused" in p6["notes"][0]  # an external broker
	p3 = result["scenarios"][1]["measurements"]
	assert p3["drainer_stats_last_round"]["sent"] == p3["events_per_round"]
	assert p3["raw_producer_msgs_per_s"]["median"] > 0
	# 300 events drain in one batch: no sustained window, and the summary says so
	assert "needs at least 3" in result["scenarios"][1]["notes"][0]
	missed = [g for g in measured if g["passed"] is False]
	assert result["passed"] is (not missed)
	assert done.returncode == (1 if missed else 0)
	summary = (tmp_path / "tiny.md").read_text()
	assert "## Gates" in summary and result["environment"]["mariadb"] in summary
	for gate in measured:
		assert f"| {gate['id']} | {gate['what']} |" in summary
		assert f"| {gate['id']} | {gate['what']} |" in done.stdout


def test_an_unknown_scenario_is_refused_with_the_list_of_known_ones(tmp_path, kafka_bootstrap, redis_url):
	done = run_benchmarks(tmp_path, kafka_bootstrap, redis_url, "--only", "P2")
	assert done.returncode == 2
	assert "unknown scenario(s) P2" in done.stderr and "P1, P1b, P3" in done.stderr
	assert not (tmp_path / "tiny.json").exists()
