"""Real RQ worker processes for integration tests.

`rq worker` forks a work horse per job, as Frappe's workers do (facts file, "Transactions
and jobs"), so anything a job creates dies with the job unless it is meant to outlive it.
Workers get the `frappe` stand-in and the test helpers on PYTHONPATH.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
STANDIN = TESTS / "standin"


def worker_env(extra: dict | None = None) -> dict:
	path = os.pathsep.join([str(STANDIN), str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])
	return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def start_worker(
	redis_url: str, queues: list[str], burst: bool = True, name: str | None = None
) -> subprocess.Popen:
	argv = [
		sys.executable,
		"-c",
		"import sys; from rq.cli import main; sys.exit(main())",
		"worker",
		"--url",
		redis_url,
		"--logging_level",
		"WARNING",
	]
	if burst:
		argv.append("--burst")
	if name:
		argv += ["--name", name]
	return subprocess.Popen([*argv, *queues], env=worker_env(), start_new_session=True)


def run_burst_worker(redis_url: str, queues: list[str], timeout: float = 60) -> int:
	"""Run a burst worker until the queues are empty; returns its exit code."""
	proc = start_worker(redis_url, queues, burst=True)
	try:
		return proc.wait(timeout=timeout)
	finally:
		if proc.poll() is None:
			proc.kill()


def child_pids(pid: int) -> list[int]:
	"""Direct children of `pid` (from /proc): an rq worker's work horse. The horse calls
	setsid(), so killing the worker's process group does not reach it."""
	children = []
	for stat in Path("/proc").glob("[0-9]*/stat"):
		try:
			fields = stat.read_text().rsplit(")", 1)[1].split()
		except OSError:
			continue
		if int(fields[1]) == pid:
			children.append(int(stat.parent.name))
	return children


def kill_tree(process: subprocess.Popen, timeout: float = 10) -> list[int]:
	"""SIGKILL an rq worker and its work horse at once; returns the horse PIDs killed. The
	worker is frozen first (SIGSTOP), so it cannot fork a new horse meanwhile. Waits up to
	`timeout` for the worker (subprocess.TimeoutExpired after that)."""
	with contextlib.suppress(ProcessLookupError):
		os.killpg(process.pid, signal.SIGSTOP)
	horses = child_pids(process.pid)
	for pid in horses:
		with contextlib.suppress(ProcessLookupError):
			os.kill(pid, signal.SIGKILL)
	with contextlib.suppress(ProcessLookupError):
		os.killpg(process.pid, signal.SIGKILL)
	process.wait(timeout)
	return horses
