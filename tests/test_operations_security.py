"""Security of the operations layer: every whitelisted method refuses Guest and users without
System Manager, and the SASL password never appears in status, health, connection checks,
exported files or error texts.

Twin: erpnext_streaming/tests/test_operations_security.py."""

from __future__ import annotations

import importlib
import inspect
import json
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta

import frappe
import pytest
from click.testing import CliRunner
from operations_support import configure, insert_invoices, log_row

from erpnext_streaming import api, commands
from erpnext_streaming.constants import Status
from erpnext_streaming.operations import jobs
from erpnext_streaming.operations import site as ops

pytestmark = pytest.mark.integration
SETTINGS_MODULE = "erpnext_streaming.erpnext_streaming.doctype.streaming_settings.streaming_settings"


def whitelisted() -> dict[str, object]:
	"""Every whitelisted function of the app's modules that define any."""
	found = {}
	for module_name in ("erpnext_streaming.api", SETTINGS_MODULE):
		module = importlib.import_module(module_name)
		for name, fn in inspect.getmembers(module, inspect.isfunction):
			if getattr(fn, "whitelisted", False) and fn.__module__ == module_name:
				found[f"{module_name}.{name}"] = fn
	return found


CALLS = {
	"erpnext_streaming.api.health": lambda fn: fn(check_broker=0),
	"erpnext_streaming.api.requeue": lambda fn: fn(filters={"status": "Dead"}),
	"erpnext_streaming.api.oldest_pending_age": lambda fn: fn(),
	"erpnext_streaming.api.last_reconcile": lambda fn: fn(),
	"erpnext_streaming.api.status_count": lambda fn: fn(filters={"status": "Dead"}),
	"erpnext_streaming.api.events_per_minute": lambda fn: fn(chart_name="Streaming Events per Minute"),
	f"{SETTINGS_MODULE}.test_connection": lambda fn: fn(),
}


@contextmanager
def acting_as(user: str, roles: list[str]):
	frappe.local.session.user, frappe.local.roles = user, roles
	try:
		yield
	finally:
		frappe.local.session.user, frappe.local.roles = "Administrator", ["Administrator", "System Manager"]


def test_every_whitelisted_method_is_covered_here():
	assert set(whitelisted()) == set(CALLS)


@pytest.mark.parametrize("path", sorted(CALLS))
def test_guest_and_users_without_system_manager_are_refused(site, path):
	configure(bootstrap_servers="")
	log_row("dead", Status.DEAD, datetime.now(), error="x")
	frappe.db.commit()
	fn = whitelisted()[path]
	for user, roles in (("Guest", ["Guest"]), ("clerk@example.com", ["Accounts User", "Stock Manager"])):
		with acting_as(user, roles), pytest.raises(frappe.PermissionError):
			CALLS[path](fn)
	frappe.db.rollback()
	assert [r[0] for r in frappe.db.sql("SELECT status FROM `tabStreaming Event Log`")] == ["Dead"]
	with acting_as("ops@example.com", ["System Manager"]):
		answer = CALLS[path](fn)
	assert answer is not None


def test_health_payload_for_a_system_manager(site):
	configure()
	log_row("q", Status.QUEUED, datetime.now() - timedelta(minutes=10))
	frappe.db.commit()
	with acting_as("ops@example.com", ["System Manager"]):
		payload = api.health(check_broker="0")
	assert payload["status"] == "degraded" and payload["healthy"] is False
	assert payload["counts"]["Queued"] == 1 and 590 <= payload["lag_seconds"] <= 700
	assert payload["broker"] is None  # not asked
	assert set(payload) == {
		"status", "healthy", "reasons", "checked_at", "enabled", "counts", "pending", "lag_seconds",
		"oldest_queued_seconds", "oldest_failed_seconds", "max_lag_seconds", "last_sent_at", "last_error",
		"dead_letters", "attention", "broker", "drainer",
	}  # fmt: skip
	frappe.local.conf["erpnext_streaming_health_max_lag_seconds"] = 3600
	assert api.health(check_broker=0)["reasons"] == []
	assert json.loads(json.dumps(payload)) == payload, "plain JSON"


def test_health_asks_the_broker_at_most_every_30_seconds(site):
	"""Monitoring polls health often; the broker's metadata is asked once per 30 s, and the
	answer says when it was checked."""
	configure()
	with acting_as("ops@example.com", ["System Manager"]):
		first = api.health()["broker"]
		time.sleep(1.1)
		second = api.health()["broker"]
	assert first["checked_at"] and second == first


REGISTRY_SECRET = f"registry-{uuid.uuid4().hex}"


@pytest.fixture
def secret(site):
	password = f"pw-{uuid.uuid4().hex}"
	configure(
		bootstrap_servers="127.0.0.1:1",
		security_protocol="SASL_PLAINTEXT",
		sasl_mechanism="SCRAM-SHA-512",
		sasl_username="svc-streaming",
		sasl_password=password,
		schema_registry_password=REGISTRY_SECRET,
	)
	# error texts that (somehow) carry the secrets
	log_row("leaky", Status.FAILED, datetime.now(), error=f"auth failed for svc-streaming:{password}@broker")
	log_row(
		"leaky-registry",
		Status.DEAD,
		datetime.now() - timedelta(minutes=1),
		error=f"401 for key:{REGISTRY_SECRET}",
	)
	frappe.db.commit()
	return password


def test_every_password_field_of_the_settings_is_a_secret(secret):
	assert set(ops.secrets()) == {secret, REGISTRY_SECRET}


def test_the_sasl_password_never_leaves_through_status_health_checks_or_exports(
	secret, monkeypatch, tmp_path
):
	@contextmanager
	def connected(ctx):
		yield "site"

	monkeypatch.setattr(commands, "connect", connected)
	runner = CliRunner()
	outputs = []
	for args in (
		["status"],
		["status", "--json"],
		["check-connection", "--timeout", "1"],
		["create-topics", "--timeout", "1"],
	):
		result = runner.invoke(commands.streaming, args, obj={"sites": ["site"]})
		outputs.append(result.output)
	assert "auth failed for svc-streaming:***@broker" in outputs[0]
	assert "Kafka: NOT reachable" in outputs[0]
	assert json.loads(outputs[1])["last_error"]["error"] == "auth failed for svc-streaming:***@broker"

	health = ops.health()
	outputs.append(json.dumps(health))
	assert health["broker"]["reachable"] is False

	test_connection = importlib.import_module(SETTINGS_MODULE).test_connection
	outputs.append(json.dumps(test_connection()))

	result = runner.invoke(commands.streaming, ["export-schemas", str(tmp_path)], obj={"sites": ["site"]})
	assert result.exit_code == 0
	outputs += [p.read_text() for p in tmp_path.iterdir()]
	outputs.append(result.output)

	for text in outputs:
		assert secret not in text and REGISTRY_SECRET not in text


def test_a_failing_backfill_redacts_the_password_from_its_error(secret, monkeypatch):
	insert_invoices(3)

	def leak(db, ids):
		raise RuntimeError(
			f"could not talk to the broker with {secret} nor the registry with {REGISTRY_SECRET}"
		)

	monkeypatch.setattr(jobs, "existing_event_ids", leak)

	@contextmanager
	def connected(ctx):
		yield "site"

	monkeypatch.setattr(commands, "connect", connected)
	result = CliRunner().invoke(
		commands.streaming, ["backfill", "--doctype", "Sales Invoice"], obj={"sites": ["site"]}
	)
	assert result.exit_code == 1
	assert "could not talk to the broker with *** nor the registry with ***" in result.output
	assert secret not in result.output and REGISTRY_SECRET not in result.output
	(job,) = jobs.find_unfinished(frappe.db, jobs.Kind.BACKFILL)
	assert job.last_error == "RuntimeError: could not talk to the broker with *** nor the registry with ***"


def test_an_unexpected_error_is_redacted_too(secret, monkeypatch):
	def boom(*args, **kwargs):
		raise RuntimeError(f"database said {secret}")

	monkeypatch.setattr(ops, "status_text", boom)

	@contextmanager
	def connected(ctx):
		yield "site"

	monkeypatch.setattr(commands, "connect", connected)
	result = CliRunner().invoke(commands.streaming, ["status"], obj={"sites": ["site"], "verbose": True})
	assert result.exit_code == 1
	assert "Error: RuntimeError: database said ***" in result.output
	assert "Traceback" in result.output and secret not in result.output
