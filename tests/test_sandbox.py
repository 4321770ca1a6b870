"""The README's sandbox command, run as a user runs it (scripts/sandbox), on the suite's
broker, Redis and MariaDB: events flow through the app's capture, outbox and drainer to
Kafka and back through the consumer kit into the view; it stops by itself or on Ctrl-C and
leaves no process, database, topic or Redis key behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymysql
import pytest
import redis
from confluent_kafka.admin import AdminClient

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]


def start(
	args: list[str], kafka_bootstrap: str, redis_url: str, mariadb: dict, log: Path
) -> subprocess.Popen:
	env = {
		**os.environ,
		"ES_USE_CURRENT_PYTHON": "1",
		"PYTHON": sys.executable,
		"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
		"REDIS_URL": redis_url,
		"MARIADB_URL": f"mysql://{mariadb['user']}:{mariadb['password']}@{mariadb['host']}:{mariadb['port']}",
	}
	return subprocess.Popen(
		[str(REPO / "scripts" / "sandbox"), *args],
		env=env,
		cwd=REPO,
		stdout=log.open("w"),
		stderr=subprocess.STDOUT,
		start_new_session=True,  # like a terminal: Ctrl-C goes to the foreground process group
	)


def left_behind(output: str, kafka_bootstrap: str, redis_url: str, mariadb: dict) -> list[str]:
	run = re.search(r"sandbox (\w{8}):", output).group(1)
	pids = [int(p) for p in re.search(r"started rq worker pids: ([\d ]+)", output).group(1).split()]
	found = [f"process {pid}" for pid in pids if Path(f"/proc/{pid}").exists()]
	found += [
		f"process {p.name}" for p in Path("/proc").glob("[0-9]*") if _cmdline(p).count(f"sandbox-{run}")
	]
	conn = pymysql.connect(**{k: mariadb[k] for k in ("host", "port", "user", "password")})
	with conn.cursor() as cur:
		cur.execute("SHOW DATABASES LIKE %s", (f"es_sandbox_{run}",))
		found += [f"database {r[0]}" for r in cur.fetchall()]
	conn.close()
	found += [f"redis key {k!r}" for k in redis.Redis.from_url(redis_url).scan_iter(match=f"*sandbox-{run}*")]
	topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
	found += [f"topic {t}" for t in topics if t.startswith(f"sandbox-{run}.")]
	return found


def _cmdline(proc: Path) -> str:
	try:
		return (proc / "cmdline").read_bytes().decode(errors="replace")
	except OSError:
		return ""


def test_the_sandbox_streams_a_workload_and_shows_it_consumed_back(
	kafka_bootstrap, redis_url, mariadb, tmp_path
):
	log = tmp_path / "sandbox.log"
	process = start(
		["--transactions", "60", "--rate", "30", "--plain", "--refresh", "2"],
		kafka_bootstrap,
		redis_url,
		mariadb,
		log,
	)
	assert process.wait(300) == 0, log.read_text()[-3000:]
	output = log.read_text()
	assert "*** SYNTHETIC DATA" in output and "run without Frappe" in output
	final = output.rsplit("*** SYNTHETIC DATA", 1)[1]
	written = int(
		re.search(
			r"written: 60 transactions \([\d.]+/s\), (\d+) events; outbox Queued 0, Sent (\d+), Failed 0, Dead 0",
			final,
		).group(1)
	)
	assert f"Sent {written}," in final, "every event of the outbox was delivered"
	assert re.search(rf"consumed back from Kafka: {written} events", final), "and every one came back"
	for doctype in ("GL Entry", "Job Card", "Sales Invoice", "Stock Ledger Entry", "Work Order"):
		assert re.search(rf"{doctype} [1-9]", final), doctype
	for company in ("Acme Corp", "Globex Ltd", "Stark Industries"):
		# invoices, revenue, per minute, receivable, cash+bank, open work orders
		assert re.search(rf"^{company}\s+\d+(\s+-?[\d,]+\.\d\d){{4}}\s+\d+$", final, re.M), company
		# its stock positions: item, warehouse, on hand, in, out, value
		assert re.search(
			rf"^  {company}\s+\S+\s+Stores - \w+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d,]+\.\d\d$", final, re.M
		), company
	assert "stock movement (net of cancellations)" in final and "alerts (stock below" in final
	assert "decode errors 0" in final and "final view" in final
	assert "late events 0; sequence gaps 0" in final, "in order across five topics, nothing given up"
	assert output.rstrip().endswith(
		"done; workers stopped, Redis keys removed, topics deleted, database dropped"
	)
	assert left_behind(output, kafka_bootstrap, redis_url, mariadb) == []


def test_ctrl_c_stops_the_sandbox_and_leaves_nothing_running(kafka_bootstrap, redis_url, mariadb, tmp_path):
	log = tmp_path / "sandbox.log"
	process = start(["--rate", "10", "--plain", "--refresh", "1"], kafka_bootstrap, redis_url, mariadb, log)
	try:
		deadline = time.monotonic() + 240
		while not re.search(r"consumed back from Kafka: [1-9]\d* events", log.read_text()):
			assert process.poll() is None, log.read_text()[-3000:]
			assert time.monotonic() < deadline, log.read_text()[-3000:]
			time.sleep(0.5)
		os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
		assert process.wait(120) == 0, log.read_text()[-3000:]
	finally:
		if process.poll() is None:
			os.killpg(process.pid, signal.SIGKILL)
	output = log.read_text()
	assert output.rstrip().endswith(
		"stopped; workers stopped, Redis keys removed, topics deleted, database dropped"
	)
	assert left_behind(output, kafka_bootstrap, redis_url, mariadb) == []


def test_the_sandbox_drainer_collects_garbage_as_a_frappe_process_does_and_restores_the_thresholds():
	"""A drainer in a bench runs under `import frappe`'s collector thresholds; the sandbox's
	work horse, which does not import Frappe, sets the same ones for the job."""
	import gc

	from sandbox.delivery import FRAPPE_GC_THRESHOLDS, frappe_gc_thresholds

	before = gc.get_threshold()
	try:
		gc.set_threshold(700, 10, 10)  # a bare Python process
		with frappe_gc_thresholds():
			assert gc.get_threshold() == FRAPPE_GC_THRESHOLDS == (7000, 20, 20)
		assert gc.get_threshold() == (700, 10, 10)
		gc.set_threshold(50_000, 10, 30)  # never lowered
		with frappe_gc_thresholds():
			assert gc.get_threshold() == (50_000, 20, 30)
	finally:
		gc.set_threshold(*before)


# -- the first hour of a new user: bad input is refused before anything starts ---------------


def sandbox_command(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
	"""`python -m sandbox` as scripts/sandbox runs it (no install step), without services."""
	clean = {
		k: v
		for k, v in os.environ.items()
		if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "MARIADB_URL")
	}
	pythonpath = os.pathsep.join([str(REPO), str(REPO / "tests")])
	return subprocess.run(
		[sys.executable, "-m", "sandbox", *args],
		env={**clean, "PYTHONPATH": pythonpath, **(env or {})},
		cwd=REPO,
		capture_output=True,
		text=True,
		timeout=timeout,
	)


@pytest.mark.parametrize(
	("option", "value", "says"),
	[
		("--rate", "0", "--rate must be more than 0"),
		("--rate", "-3", "--rate must be more than 0"),
		("--workers", "0", "--workers must be at least 1"),
		("--transactions", "-1", "--transactions must be 0 (no limit) or more"),
		("--duration", "-1", "--duration must be 0 (no limit) or more"),
		("--refresh", "0", "--refresh must be more than 0"),
		("--timeout", "0", "--timeout must be more than 0"),
	],
)
def test_an_impossible_option_is_refused_in_one_line_before_anything_starts(option, value, says):
	from sandbox.run import parse

	result = sandbox_command(option, value)
	assert result.returncode == 2, result.stdout + result.stderr
	assert result.stdout == "", "nothing started, no view"
	assert result.stderr.strip().splitlines() == [f"scripts/sandbox: error: {says}, not {value}"]
	with pytest.raises(SystemExit):
		parse([option, value])


@pytest.mark.parametrize(
	("variable", "value", "cause"),
	[
		("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:{port}", "Connection refused"),
		("KAFKA_BOOTSTRAP_SERVERS", "no-such-host.invalid:9092", "Failed to resolve"),
		("REDIS_URL", "redis://127.0.0.1:{port}/0", "Connection refused"),
		("REDIS_URL", "http://127.0.0.1/0", "Redis URL must specify one of the following schemes"),
		("MARIADB_URL", "mysql://root:secret@127.0.0.1:{port}", "Connection refused"),
	],
)
def test_an_unreachable_service_is_named_with_its_cause_in_one_line_before_anything_starts(
	variable, value, cause
):
	from harness.services import free_port

	value = value.format(port=free_port())
	started = time.monotonic()
	result = sandbox_command("--duration", "5", env={variable: value})
	assert time.monotonic() - started < 30, "not the services' start-up timeouts"
	assert result.returncode == 1, result.stdout + result.stderr
	assert "starting" not in result.stdout and "%3|" not in result.stderr, "no librdkafka flood"
	lines = result.stderr.strip().splitlines()
	assert len(lines) == 1, result.stderr
	assert lines[0].startswith(f"scripts/sandbox: {variable}=") and cause in lines[0], lines[0]
	assert "secret" not in lines[0], "a password is never printed"


def test_the_rate_asked_is_the_rate_written_and_the_view_says_both(redis_url, mariadb, tmp_path):
	"""Before: one transaction per consumer poll (about 19/s whatever --rate asked)."""
	log = tmp_path / "sandbox.log"
	env = {
		"REDIS_URL": redis_url,
		"MARIADB_URL": f"mysql://{mariadb['user']}:{mariadb['password']}@{mariadb['host']}:{mariadb['port']}",
	}
	result = sandbox_command(
		"--rate",
		"60",
		"--duration",
		"6",
		"--broker",
		"tansu",
		"--plain",
		"--refresh",
		"2",
		env=env,
		timeout=180,
	)
	log.write_text(result.stdout + result.stderr)
	assert result.returncode == 0, log.read_text()[-3000:]
	final = result.stdout.rsplit("*** SYNTHETIC DATA", 1)[1]
	assert "60 transactions/s asked" in result.stdout
	written, achieved = re.search(r"written: (\d+) transactions \(([\d.]+)/s\)", final).groups()
	assert int(written) >= 0.75 * 60 * 6, final
	assert float(achieved) >= 45, final


# -- every exit path cleans up: SIGTERM / Ctrl-C at any point, and a second one ---------------

# Runs the sandbox as its child and adopts whatever it leaves running (PR_SET_CHILD_SUBREAPER):
# after the sandbox exits, any process of it still alive is a child of this wrapper, which
# reports and kills it. Prints the sandbox's PID first, then its output follows.
ADOPTER = """
import ctypes, json, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
report = sys.argv[1]
sandbox = subprocess.Popen(sys.argv[2:])
print(f"adopter: sandbox pid {sandbox.pid}", flush=True)
code = sandbox.wait()
time.sleep(1)
left = []
for stat in os.listdir("/proc"):
	if not stat.isdigit():
		continue
	try:
		fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
		cmdline = open(f"/proc/{stat}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
	except OSError:
		continue
	if int(fields[1]) == os.getpid() and fields[0] != "Z":
		left.append(f"{stat} {cmdline}")
		try:
			os.killpg(int(stat), signal.SIGKILL)
		except OSError:
			os.kill(int(stat), signal.SIGKILL)
json.dump({"code": code, "left": left}, open(report, "w"))
"""


@pytest.mark.parametrize(
	("when", "signals"),
	[
		("sandbox \\w{8}: SYNTHETIC data; starting services", 1),  # during service start-up
		("broker: Tansu .*started", 1),  # the broker up, the rest still starting
		("consumed back from Kafka", 1),  # during the run
		("consumed back from Kafka", 2),  # and a second one while it cleans up
	],
)
def test_sigterm_at_any_point_leaves_no_process_database_or_redis_key(
	redis_url, mariadb, tmp_path, when, signals
):
	log = tmp_path / "sandbox.log"
	report = tmp_path / "report.json"
	env = {
		**{k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"},
		"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")]),
		"REDIS_URL": redis_url,
		"MARIADB_URL": f"mysql://{mariadb['user']}:{mariadb['password']}@{mariadb['host']}:{mariadb['port']}",
	}
	argv = [sys.executable, "-m", "sandbox", "--broker", "tansu", "--rate", "10", "--plain", "--refresh", "1"]
	adopter = subprocess.Popen(
		[sys.executable, "-c", ADOPTER, str(report), *argv],
		env=env,
		cwd=REPO,
		stdout=log.open("w"),
		stderr=subprocess.STDOUT,
		start_new_session=True,
	)
	try:
		deadline = time.monotonic() + 120
		while not re.search(when, log.read_text()):
			assert adopter.poll() is None, log.read_text()[-3000:]
			assert time.monotonic() < deadline, log.read_text()[-3000:]
			time.sleep(0.05)
		sandbox = int(re.search(r"adopter: sandbox pid (\d+)", log.read_text()).group(1))
		for _ in range(signals):
			os.kill(sandbox, signal.SIGTERM)  # what `timeout` sends
			time.sleep(0.3)
		assert adopter.wait(120) == 0, log.read_text()[-3000:]
	finally:
		if adopter.poll() is None:
			os.killpg(adopter.pid, signal.SIGKILL)
	import json

	output = log.read_text()
	result = json.loads(report.read_text())
	assert result["code"] == 0, output[-3000:]
	assert result["left"] == [], output[-3000:]
	run = re.search(r"sandbox (\w{8}):", output).group(1)
	pids = [int(p) for p in re.findall(r"\bpids?:? ([\d ]+)", output) for p in p.split()]
	assert [p for p in pids if Path(f"/proc/{p}").exists()] == []
	conn = pymysql.connect(**{k: mariadb[k] for k in ("host", "port", "user", "password")})
	with conn.cursor() as cur:
		cur.execute("SHOW DATABASES LIKE %s", (f"es_sandbox_{run}",))
		assert cur.fetchall() == ()
	conn.close()
	assert list(redis.Redis.from_url(redis_url).scan_iter(match=f"*sandbox-{run}*")) == []
	assert re.search(rf"sandbox {run}: stopped\b.*", output.rstrip().splitlines()[-1]), output[-2000:]
