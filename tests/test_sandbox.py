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
			r"written: 60 transactions, (\d+) events; outbox Queued 0, Sent (\d+), Failed 0, Dead 0", final
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
	assert output.rstrip().endswith("done; workers stopped, database dropped, topics deleted")
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
	assert output.rstrip().endswith("stopped; workers stopped, database dropped, topics deleted")
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
