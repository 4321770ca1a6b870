"""hooks.py stays declarative and agrees with the built-in catalog."""

from __future__ import annotations

import subprocess
import sys

from erpnext_streaming import constants, hooks


def test_hooks_import_without_frappe_installed():
	# a clean interpreter without the stand-in on sys.path: `import frappe` would fail
	code = "import erpnext_streaming.hooks, sys; assert 'frappe' not in sys.modules; print('ok')"
	out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
	assert out.returncode == 0, out.stderr
	assert out.stdout.strip() == "ok"


def test_each_builtin_doctype_hooks_exactly_the_methods_its_triggers_need():
	for spec in constants.BUILTIN_SPECS:
		assert set(hooks.doc_events[spec.doctype]) == {t.method for t in spec.triggers}, spec.doctype


def test_generic_path_listens_to_submit_cancel_and_update_after_submit():
	assert set(hooks.doc_events["*"]) == {t.method for t in constants.GENERIC_TRIGGERS}


def test_event_log_retention_is_registered_with_log_settings():
	assert hooks.default_log_clearing_doctypes == {"Streaming Event Log": 30}
	assert hooks.export_python_type_annotations is True
	assert not hasattr(hooks, "required_apps")  # ERPNext is optional (README)


def _resolves(path: str) -> bool:
	import importlib

	module, _, name = path.rpartition(".")
	return callable(getattr(importlib.import_module(module), name))


def test_the_sweeper_runs_every_minute_and_the_overdue_job_daily_after_erpnexts():
	assert hooks.scheduler_events["cron"] == {
		"* * * * *": ["erpnext_streaming.delivery.jobs.sweep"],
		"30 1 * * *": ["erpnext_streaming.emitters.handler.emit_changes_without_hook"],
	}
	assert all(_resolves(path) for paths in hooks.scheduler_events["cron"].values() for path in paths)


def test_revaluations_follow_completed_reposts_with_an_hourly_safety_net():
	assert hooks.doc_events["Repost Item Valuation"] == {
		"on_change": "erpnext_streaming.operations.site.on_repost_change"
	}
	assert hooks.scheduler_events["hourly_long"] == [
		"erpnext_streaming.operations.site.run_pending_revaluations"
	]
	assert set(hooks.scheduler_events) == {"cron", "hourly_long"}
	assert _resolves(hooks.doc_events["Repost Item Valuation"]["on_change"])
	assert _resolves(hooks.scheduler_events["hourly_long"][0])
