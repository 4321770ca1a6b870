"""The bench commands (Click layer) on the stand-in site: options, output, exit codes.

`connect` (frappe.init + frappe.connect of the bench's site) is replaced by the test's
already connected stand-in site; everything below it is the real code.
Twin: erpnext_streaming/tests/test_commands.py."""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import fastavro
import frappe
import pytest
from click.testing import CliRunner
from operations_support import configure, event_log, insert_invoices, log_row

from erpnext_streaming import commands
from erpnext_streaming.constants import Status
from erpnext_streaming.operations import jobs
from erpnext_streaming.schemas import default_registry

pytestmark = pytest.mark.integration


def test_frappe_finds_the_command_group():
	assert commands.commands == [commands.streaming]
	assert set(commands.streaming.commands) == {
		"status",
		"check-connection",
		"create-topics",
		"requeue",
		"replay",
		"backfill",
		"export-schemas",
		"reconcile",
	}


def test_status_prints_the_numbers_and_exits_by_health(bench):
	configure()
	now = datetime.now()
	log_row("s", Status.SENT, now - timedelta(minutes=1), sent_at=now)
	log_row("q", Status.QUEUED, now - timedelta(seconds=30))
	frappe.db.commit()
	result = bench("status", "--no-broker")
	assert result.exit_code == 0, result.output
	assert result.stdout.startswith("Streaming: OK\n")
	assert "  Queued             1" in result.stdout and "  Sent               1" in result.stdout
	assert "Drainer: not running" in result.stdout

	log_row("d", Status.DEAD, now, error="MSG_SIZE_TOO_LARGE")
	frappe.db.commit()
	result = bench("status", "--no-broker", "--json")
	assert result.exit_code == 1
	payload = json.loads(result.stdout)
	assert payload["status"] == "degraded" and payload["counts"] == {
		"Queued": 1,
		"Sent": 1,
		"Failed": 0,
		"Dead": 1,
	}
	assert payload["per_topic"] == {"erpnext.gl-entry": {"Queued": 1, "Sent": 1, "Failed": 0, "Dead": 1}}
	assert payload["last_error"]["error"] == "MSG_SIZE_TOO_LARGE"

	configure(enabled=0)
	assert bench("status", "--no-broker").exit_code == 0  # disabled is not a failure


def test_status_reports_an_unreachable_broker_with_exit_1(bench):
	configure(bootstrap_servers="127.0.0.1:1")
	result = bench("status")
	assert result.exit_code == 1
	assert result.stdout.startswith("Streaming: DOWN (Kafka is not reachable: ")
	assert "Kafka: NOT reachable: " in result.stdout


def test_check_connection_lists_brokers_and_which_catalog_topics_exist(bench, kafka_bootstrap):
	from delivery_support import create_topics

	create_topics(kafka_bootstrap, ("erpnext.sales-invoice", 1))
	configure(bootstrap_servers=kafka_bootstrap)
	result = bench("check-connection", "--timeout", "10")
	assert result.exit_code == 1, result.output  # topics are missing
	assert result.stdout.startswith("Connected to cluster ")
	assert f"Brokers: {kafka_bootstrap}" in result.stdout
	assert "  erpnext.sales-invoice: present, 1 partition, replication factor 1, min.insync.replicas 1\n" in (
		result.stdout
	)
	assert "  erpnext.dead-letter: MISSING, create with 1 partition, replication factor 1, " in result.stdout
	assert "streaming create-topics" in result.stdout

	configure(bootstrap_servers="127.0.0.1:1")
	result = bench("check-connection", "--timeout", "1")
	assert result.exit_code == 1 and "Kafka is not reachable: " in result.stderr
	result = bench("create-topics", "--timeout", "1")
	assert result.exit_code == 1 and "Kafka is not reachable: " in result.stderr


def test_requeue_and_replay_options_and_exit_codes(bench):
	configure()
	now = datetime.now()
	log_row("f", Status.FAILED, now - timedelta(minutes=2), error="timeout")
	log_row("d", Status.DEAD, now - timedelta(minutes=2), error="too large")
	log_row("s", Status.SENT, now - timedelta(hours=1), sent_at=now)
	frappe.db.commit()

	result = bench("requeue", "--dry-run")
	assert (result.exit_code, result.stdout) == (0, "2 event(s) would be requeued\n")
	result = bench(
		"requeue", "--status", "Dead", "--since", (now - timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S")
	)
	assert (result.exit_code, result.stdout) == (0, "Requeued 1 event(s); the drainer was woken\n")
	assert bench("requeue", "--status", "Sent").exit_code == 2  # not a choice

	assert bench("replay").exit_code == 2  # --from is required
	result = bench("replay", "--from", "2026-01-02", "--to", "2026-01-01")
	assert result.exit_code == 2 and result.stderr == "Error: --from must be before --to\n"
	day = (now - timedelta(days=1)).strftime("%Y-%m-%d")
	result = bench("replay", "--from", day, "--dry-run")
	assert (result.exit_code, result.stdout) == (0, "1 Sent event(s) would be replayed\n")
	result = bench("replay", "--from", day)
	assert result.exit_code == 0 and result.stdout.startswith(
		"Queued 1 event(s) again with their original event ids"
	)
	assert next(r.event_id for r in event_log() if r.reference_name == "s") == event_log()[-1].event_id


def test_backfill_stops_on_sigterm_and_the_same_command_resumes_without_duplicates(bench, monkeypatch):
	configure()
	names = insert_invoices(2000)
	real = jobs.existing_event_ids
	calls = {"n": 0}

	def signal_in_chunk_three(db, ids):
		calls["n"] += 1
		if calls["n"] == 3:  # while chunk 3 is being written: a real SIGTERM to this process
			os.kill(os.getpid(), signal.SIGTERM)
		return real(db, ids)

	monkeypatch.setattr(jobs, "existing_event_ids", signal_in_chunk_three)
	result = bench("backfill", "--doctype", "Sales Invoice", "--chunk-size", "400")
	assert result.exit_code == commands.EXIT_INTERRUPTED, result.output
	assert "Backfill #" in result.stderr and "interrupted after 800 of 2,000 document(s)" in result.stderr
	assert "run the same command to resume" in result.stderr
	assert "Backfill Sales Invoice  [########............]  800/2,000   40%" in result.stderr
	assert len(event_log()) == 800
	assert signal.getsignal(signal.SIGTERM) is not None  # the handler was put back
	monkeypatch.setattr(jobs, "existing_event_ids", real)

	result = bench("backfill", "--doctype", "Sales Invoice", "--chunk-size", "400")
	assert result.exit_code == 0, result.output
	assert "Resuming backfill #" in result.stderr and "after 800 of 2,000 documents" in result.stderr
	assert "Backfill Sales Invoice  [####################]  2,000/2,000  100%" in result.stderr
	assert (
		result.stdout.startswith("Backfill #")
		and "completed: 2,000 of 2,000 document(s), 2,000 event(s)" in result.stdout
	)
	rows = event_log()
	assert sorted(r.reference_name for r in rows) == names and len({r.event_id for r in rows}) == 2000

	result = bench(
		"backfill",
		"--doctype",
		"Sales Invoice",
		"--dry-run",
		"--from-date",
		"2024-01-01",
		"--to-date",
		"2024-01-10",
	)
	assert (result.exit_code, result.stdout) == (
		0,
		"60 submitted Sales Invoice document(s) in scope; nothing was written\n",
	)
	assert len(event_log()) == 2000

	result = bench("backfill", "--doctype", "Sales Invoice", "--quiet")
	assert result.exit_code == 0 and result.stderr.count("[") == 0
	assert "0 event(s) written, 2,000 skipped (already in the Event Log)" in result.stdout


def test_backfill_refusals_exit_2_and_a_busy_job_exits_1(bench, mariadb):
	configure()
	result = bench("backfill", "--doctype", "ToDo")
	assert result.exit_code == 2
	assert result.stderr == (
		"Error: ToDo does not stream its submit events: add it to the Event Catalog with Submit ticked\n"
	)
	assert bench("backfill", "--doctype", "Sales Invoice", "--from-date", "01/02/2024").exit_code == 2
	result = bench(
		"backfill", "--doctype", "Sales Invoice", "--from-date", "2024-02-01", "--to-date", "2024-01-01"
	)
	assert (result.exit_code, result.stderr) == (2, "Error: --from-date is after --to-date\n")

	from frappe.standin import StandinDatabase

	from erpnext_streaming.outbox.mariadb import get_lock, lock_name

	insert_invoices(3)
	job = jobs.create(frappe.db, jobs.Kind.BACKFILL, datetime.now(), reference_doctype="Sales Invoice")
	frappe.db.commit()
	other = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})
	try:
		assert get_lock(other, lock_name(other, f"job:{job.name}"), 0)
		result = bench("backfill", "--doctype", "Sales Invoice")
		assert result.exit_code == 1 and "is being run by another process" in result.stderr
	finally:
		other.close()


def test_export_schemas_writes_valid_self_contained_avsc_and_a_manifest(bench, tmp_path):
	configure()
	target = tmp_path / "schemas"
	result = bench("export-schemas", str(target))
	assert result.exit_code == 0, result.output
	registry = default_registry()
	expected = {f"{s.doctype.lower().replace(' ', '_')}.v{s.version}.avsc": s for s in registry.all()}
	assert result.stdout == f"Wrote {len(expected)} schema file(s) and manifest.json to {target}\n"
	assert {p.name for p in target.iterdir()} == {*expected, "manifest.json"}
	for name, schema in expected.items():
		written = json.loads((target / name).read_text())
		fastavro.parse_schema(written)  # valid Avro, no outside references
		canonical = fastavro.schema.to_parsing_canonical_form(written)
		assert fastavro.schema.fingerprint(canonical, "CRC-64-AVRO") == schema.fingerprint
	manifest = json.loads((target / "manifest.json").read_text())["schemas"]
	invoice = next(m for m in manifest if m["doctype"] == "Sales Invoice")
	assert invoice == {
		"file": "sales_invoice.v1.avsc",
		"doctype": "Sales Invoice",
		"version": 1,
		"name": "io.erpnext.streaming.SalesInvoiceEvent",
		"fingerprint": registry.get("Sales Invoice", 1).fingerprint,
		"origin": "shipped",
		"topic": "erpnext.sales-invoice",
	}

	a_file = tmp_path / "not-a-dir"
	a_file.write_text("x")
	result = bench("export-schemas", str(a_file))
	assert result.exit_code == 2


def test_without_a_site_the_command_says_so(site):
	result = CliRunner().invoke(commands.streaming, ["status"], obj={"sites": []})
	assert result.exit_code == 2 and "no site: pass --site SITE" in result.output
	assert Path(commands.__file__).name == "__init__.py"  # Frappe imports <app>.commands
