"""Manual requeue (`erpnext_streaming.api.requeue`): System Manager only, Failed/Dead rows
only, names or a filter, never a method path. Twin: erpnext_streaming/tests/test_requeue.py."""

from __future__ import annotations

import inspect
import json
import re
from datetime import datetime, timedelta

import frappe
import pytest
from delivery_support import event
from harness.schema import DOCTYPE_DIR

from erpnext_streaming import api
from erpnext_streaming.constants import BUNDLE_TABLE, CURSOR_TABLE, EVENT_LOG_TABLE, Status
from erpnext_streaming.delivery import bundles, wake
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.outbox.mariadb import utc_now
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 23, 10, 0)


@pytest.fixture
def log(site):
	"""One row per state: {label: name}. Acme Corp's next bundle (holding `failed`) waits
	for its retry; `in_flight` is a Dead row a drainer is copying to the dead-letter topic."""
	states = {
		"queued": (Status.QUEUED, "Acme Corp"),
		"sent": (Status.SENT, "Acme Corp"),
		"failed": (Status.FAILED, "Acme Corp"),
		"dead": (Status.DEAD, "Acme Corp"),
		"dead_globex": (Status.DEAD, "Globex Ltd"),
		"in_flight": (Status.DEAD, "Globex Ltd"),
	}
	write(
		frappe.db,
		[event(label, company, "erpnext.sales-invoice") for label, (_, company) in states.items()],
		NOW,
	)
	names = dict(frappe.db.sql(f"SELECT reference_name, name FROM `{EVENT_LOG_TABLE}`"))
	for label, (status, _) in states.items():
		frappe.db.sql(
			f"UPDATE `{EVENT_LOG_TABLE}` SET status = %s, attempts = %s, dead_lettered_at = %s, "
			"next_attempt_at = %s, last_error = %s WHERE name = %s",
			(
				status,
				3 if status in Status.REQUEUEABLE else 0,
				NOW if status == Status.DEAD and label != "in_flight" else None,
				NOW if status == Status.FAILED else None,
				"boom" if status in Status.REQUEUEABLE else "",
				names[label],
			),
		)
	frappe.db.sql(  # leases are UTC from the database's clock
		f"UPDATE `{EVENT_LOG_TABLE}` SET lease_owner = 'drainer', "
		"lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL 5 MINUTE WHERE name = %s",
		(names["in_flight"],),
	)
	frappe.db.sql(
		f"INSERT INTO `{CURSOR_TABLE}` (name, company, delivered_through, attempts, next_attempt_at, last_error) "
		"VALUES ('Acme Corp', 'Acme Corp', 0, 3, UTC_TIMESTAMP(6) + INTERVAL 1 HOUR, 'boom')"
	)
	frappe.db.sql(  # Globex's bundle was delivered (its events then went Dead)
		f"INSERT INTO `{CURSOR_TABLE}` (name, company, delivered_through) "
		f"SELECT 'Globex Ltd', 'Globex Ltd', MAX(name) FROM `{BUNDLE_TABLE}` WHERE company = 'Globex Ltd'"
	)
	frappe.db.commit()
	return names


def bundle_entries() -> list[list[int]]:
	"""Each bundle's Event Log names, in name order."""
	return [
		refs_in(messages)
		for (messages,) in frappe.db.sql(f"SELECT messages FROM `{BUNDLE_TABLE}` ORDER BY name")
	]


def states(commit: bool = True) -> dict[int, tuple]:
	if commit:
		frappe.db.commit()
	return {
		r[0]: tuple(r[1:])
		for r in frappe.db.sql(
			f"SELECT name, status, attempts, dead_lettered_at, next_attempt_at, lease_owner FROM `{EVENT_LOG_TABLE}`"
		)
	}


def act_as(user: str, roles: list[str]) -> None:
	frappe.local.session.user = user
	frappe.local.roles = roles


def test_requeue_refuses_callers_without_the_system_manager_role(log):
	before = states()
	act_as("clerk@example.com", ["Accounts User", "Accounts Manager"])
	with pytest.raises(frappe.PermissionError):
		api.requeue(names=[log["failed"]])
	with pytest.raises(frappe.PermissionError):
		api.requeue(filters={"status": "Dead"})
	assert states() == before

	act_as("admin@example.com", ["System Manager"])
	assert api.requeue(names=[log["failed"]])["requeued"] == 1


def test_only_failed_and_dead_rows_are_requeued_all_or_nothing(log):
	before = states()
	for label in ("queued", "sent", "in_flight"):
		with pytest.raises(frappe.ValidationError) as refused:
			api.requeue(names=json.dumps([log["failed"], log[label]]))  # the desk sends JSON text
		assert str(log[label]) in str(refused.value)
		assert states() == before, "nothing changed"
	with pytest.raises(frappe.ValidationError, match="does not exist"):
		api.requeue(names=[log["dead"], 999999])
	with pytest.raises(frappe.ValidationError):
		api.requeue(names=["1; DROP TABLE x"])

	utc = utc_now(frappe.db)
	# Acme waits for its retry; Globex has nothing left to deliver
	assert bundles.claim(frappe.db, "d", utc + timedelta(minutes=1), utc, 10) == []
	frappe.db.rollback()
	before_bundles = bundle_entries()

	act_as("admin@example.com", ["System Manager"])
	result = api.requeue(names=[str(log["failed"]), log["dead"]])
	assert result == {"requeued": 2, "names": sorted([log["failed"], log["dead"]])}
	assert wake.after_commit in frappe.db.after_commit._functions  # the drainer is woken after commit
	after = states(commit=False)  # this request's transaction, not committed
	for label in ("failed", "dead"):
		assert after[log[label]] == (Status.QUEUED, 0, None, None, None)  # a fresh start
	# the Failed row is still in Acme's next bundle, due now with a fresh attempt count; the
	# Dead row goes into a new bundle at the end of Acme's queue
	cursor = frappe.db.sql(
		f"SELECT attempts, next_attempt_at FROM `{CURSOR_TABLE}` WHERE name = 'Acme Corp'", as_dict=True
	)
	assert [(c.attempts, c.next_attempt_at) for c in cursor] == [(0, None)]
	assert bundle_entries() == [*before_bundles, [log["dead"]]]
	claimed = bundles.claim(frappe.db, "d", utc + timedelta(minutes=1), utc, 10)
	assert [b.cursor for b in claimed] == ["Acme Corp", "Acme Corp"] and claimed[0].attempts == 0
	claimed_names = [n for b in claimed for n in refs_in(b.messages)]
	assert log["failed"] in claimed_names and claimed_names[-1] == log["dead"]


def test_requeue_by_filter_only_ever_matches_failed_or_dead_rows(log):
	result = api.requeue(filters=json.dumps({"company": "Globex Ltd"}))
	assert result == {"requeued": 1, "names": [log["dead_globex"]]}  # in_flight is skipped: leased
	frappe.db.rollback()
	result = api.requeue(filters={"company": "Acme Corp", "status": ["Failed", "Dead"]})
	assert result["names"] == sorted([log["failed"], log["dead"]])  # never queued or sent
	frappe.db.rollback()
	assert api.requeue(filters={"status": "Dead"})["names"] == sorted([log["dead"], log["dead_globex"]])
	frappe.db.rollback()
	for bad in (
		{"status": "Sent"},
		{"status": ["Dead", "Queued"]},
		{"payload": "AA=="},
		{"company": {"$ne": 1}},
	):
		with pytest.raises(frappe.ValidationError):
			api.requeue(filters=bad)
	with pytest.raises(frappe.ValidationError):
		api.requeue()
	assert api.requeue(filters={"company": "Nobody Inc"}) == {"requeued": 0, "names": []}


def test_requeue_takes_names_or_a_filter_and_never_a_method_path():
	assert list(inspect.signature(api.requeue).parameters) == ["names", "filters"]
	assert api.requeue.whitelisted
	with pytest.raises(TypeError):
		api.requeue(names=[1], method="frappe.client.delete")


def test_the_list_view_colours_statuses_and_offers_requeue():
	script = (DOCTYPE_DIR / "streaming_event_log" / "streaming_event_log_list.js").read_text()
	assert 'frappe.listview_settings["Streaming Event Log"]' in script
	colours = dict(re.findall(r"^\t(Queued|Sent|Failed|Dead): \"(\w+)\",$", script, re.M))
	assert colours == {"Queued": "blue", "Sent": "green", "Failed": "orange", "Dead": "red"}
	assert 'method: "erpnext_streaming.api.requeue"' in script and "get_checked_items(true)" in script
	assert "get_indicator(doc)" in script and "add_action_item" in script


def test_a_filter_too_large_for_a_request_is_requeued_by_a_background_job(log, workers, monkeypatch):
	from delivery_support import wait_for

	monkeypatch.setattr(api, "REQUEUE_INLINE_LIMIT", 1)
	dead = (log["dead"], log["dead_globex"])
	result = api.requeue(filters={"status": ["Dead"]})
	assert result == {"requeued": 0, "matched": 2, "background": True}
	assert {states()[n][0] for n in dead} == {Status.DEAD}, "nothing requeued inside the request"
	workers.start(1)
	wait_for(lambda: {states()[n][0] for n in dead} == {Status.QUEUED}, 30, "the job requeued them")
	assert states()[log["in_flight"]][0] == Status.DEAD
