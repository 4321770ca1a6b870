"""pytest fixtures: real Kafka-protocol broker, Redis, MariaDB, and the `frappe` stand-in.

How each service is found (README "How the tests find services"):
- Kafka: KAFKA_BOOTSTRAP_SERVERS, else one Apache Kafka node of our own (harness/kafka.py) on a
  free loopback port (stopped at the end).
- Redis: REDIS_URL, else our own redis-server (never the developer's Redis on 6379).
- MariaDB: MARIADB_URL, else 127.0.0.1:3306 (root, no password) if it answers, else our
  own mariadbd on a temporary datadir. Each session gets a fresh database holding the
  app's tables, created from its own doctype JSONs (harness/schema.py), dropped at the end.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
# RQ queue names of this run (`<bench id>:long`): test runs sharing a Redis (two checkouts,
# CI beside a developer) never take each other's jobs; worker processes inherit it
os.environ.setdefault("ES_STANDIN_BENCH_ID", f"standin-{uuid.uuid4().hex[:8]}")
sys.path.insert(0, str(TESTS / "standin"))  # `import frappe` -> the stand-in (tests/standin/README.md)

import frappe

assert getattr(frappe, "IS_STANDIN", False), "the real Frappe is importable; run these tests outside a bench"

from frappe import standin
from harness import schema, services
from harness.erpnext_tables import ERPNEXT_TABLES

# frappe.get_meta of the stand-in knows the app's doctypes and the ERPNext subset
for _definition in (*schema.doctype_jsons().values(), *ERPNEXT_TABLES):
	standin.register_doctype(_definition)


@pytest.fixture(scope="session")
def kafka_bootstrap():
	with services.kafka_broker() as bootstrap:
		yield bootstrap


@pytest.fixture(scope="session")
def redis_url():
	with services.redis_server() as url:
		yield url


@pytest.fixture(scope="session")
def mariadb():
	"""Connection parameters of a fresh database with the app's tables."""
	import pymysql

	with services.mariadb_server() as server:
		name = f"es_test_{uuid.uuid4().hex[:10]}"
		admin = pymysql.connect(autocommit=True, **server)
		with admin.cursor() as cur:
			cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
		params = {**server, "database": name}
		conn = pymysql.connect(autocommit=True, **params)
		with conn.cursor() as cur:
			tables = schema.create_app_tables(cur, ERPNEXT_TABLES)
		conn.close()
		try:
			yield {**params, "tables": tables}
		finally:
			with admin.cursor() as cur:
				cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
			admin.close()


def _db_params(mariadb: dict) -> dict:
	return {k: v for k, v in mariadb.items() if k != "tables"}


@pytest.fixture
def site(mariadb, redis_url):
	"""A stand-in site: frappe.db on the test database, frappe.cache on real Redis.

	Tables are emptied before each test; each test gets its own site name, so Redis keys
	and RQ job ids of different tests never meet.
	"""
	name = f"test-{uuid.uuid4().hex[:8]}.local"
	standin.init_site(name, _db_params(mariadb), redis_url)
	for table in mariadb["tables"]:
		frappe.db.sql(f"DELETE FROM `{table}`")
	frappe.db.commit()
	try:
		yield name
	finally:
		try:
			frappe.db.rollback()
		finally:
			standin.destroy()


@pytest.fixture
def bench(site, monkeypatch):
	"""`bench --site SITE streaming ARGS` on the test's site: `bench("status", "--json")`."""
	from contextlib import contextmanager

	from click.testing import CliRunner

	from erpnext_streaming import commands

	@contextmanager
	def connected(ctx):
		assert ctx.obj["sites"] == [site]
		yield site

	monkeypatch.setattr(commands, "connect", connected)

	def invoke(*args: str):
		return CliRunner().invoke(
			commands.streaming, list(args), obj={"sites": [site]}, catch_exceptions=False
		)

	return invoke


@pytest.fixture
def workers(site):
	"""Real forking `rq worker` processes on the site's long queue, killed by PID at the end
	(tests/delivery_support.py `Workers`)."""
	from delivery_support import worker_pool

	yield from worker_pool()
