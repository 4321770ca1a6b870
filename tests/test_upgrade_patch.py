"""The upgrades (patches/v1_0): from the row-by-row drainer, rows an earlier version left
Queued or Failed get delivery bundles, in name order, so none is left undelivered; and the
cursors' leases and retry times an earlier version wrote in local time are cleared (they
are UTC from the database's clock now).

Commits: every test has a database of its own; a commit ends the earlier version's (or
the migrate's) transaction, as `bench migrate` does."""

from __future__ import annotations

from datetime import datetime, timedelta

import frappe
import pytest

from erpnext_streaming.constants import BUNDLE_TABLE, CURSOR_TABLE, EVENT_LOG_TABLE, Status
from erpnext_streaming.delivery import bundles
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.outbox.mariadb import utc_now
from erpnext_streaming.outbox.outcomes import claim_dead_letters
from erpnext_streaming.outbox.records import Lease, MessageContext, OutboxRecord
from erpnext_streaming.outbox.write import write
from erpnext_streaming.patches.v1_0 import utc_delivery_leases
from erpnext_streaming.patches.v1_0.queue_pending_events import queue_pending

pytestmark = pytest.mark.integration

NOW = datetime(2026, 12, 4, 10, 0)


def record(name: str, company: str) -> OutboxRecord:
	return OutboxRecord(
		event_id=f"id-{name}", event_type="posted", reference_doctype="GL Entry", reference_name=name,
		company=company, event_time=NOW, topic="erpnext.gl-entry", message_key=company,
		schema_name="io.erpnext.streaming.GLEntry", schema_version=1, schema_fingerprint="ab",
		payload=bytes([0, 1, 2]),
	)  # fmt: skip


def rows_as_an_earlier_version_left_them() -> dict[str, int]:
	"""Rows written, some delivered (Sent), one Failed and one Dead, and no bundle at all."""
	write(frappe.db, [record(f"{c}{i}", c) for i in range(1, 4) for c in ("A", "B")], NOW)
	frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}`")
	names = {r[1]: r[0] for r in frappe.db.sql(f"SELECT name, reference_name FROM `{EVENT_LOG_TABLE}`")}
	for ref, status in (("A1", Status.SENT), ("B1", Status.SENT), ("A2", Status.FAILED), ("B3", Status.DEAD)):
		frappe.db.sql(f"UPDATE `{EVENT_LOG_TABLE}` SET status = %s WHERE name = %s", (status, names[ref]))
	frappe.db.commit()  # the earlier version's transactions ended before the migrate
	return names


def test_pending_rows_of_an_earlier_version_get_bundles_in_name_order_and_are_claimed(site):
	names = rows_as_an_earlier_version_left_them()

	queued = queue_pending(frappe.db, NOW, MessageContext("site.test"), chunk=2)
	frappe.db.commit()  # the patch's transaction ends, as bench migrate commits it

	assert queued == 3  # A2 (Failed), A3 and B2 (Queued); not the Sent rows, nor the Dead one
	per_company: dict[str, list[int]] = {}
	for company, messages in frappe.db.sql(f"SELECT company, messages FROM `{BUNDLE_TABLE}` ORDER BY name"):
		per_company.setdefault(company, []).extend(refs_in(messages))
	assert per_company == {"A": [names["A2"], names["A3"]], "B": [names["B2"]]}

	claimed = bundles.claim(frappe.db, "drainer-1", NOW + timedelta(minutes=5), NOW, limit=100)
	frappe.db.commit()  # the claim's transaction ends, as the drainer commits it
	got = [n for b in claimed for n in refs_in(b.messages)]
	assert sorted(got) == sorted([names["A2"], names["A3"], names["B2"]])
	assert [b.name for b in claimed] == sorted(b.name for b in claimed)


def test_the_patch_finds_nothing_to_queue_on_a_site_without_pending_rows(site):
	write(frappe.db, [record("A1", "A")], NOW)
	frappe.db.sql(f"UPDATE `{EVENT_LOG_TABLE}` SET status = %s", (Status.SENT,))
	frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}`")
	frappe.db.commit()  # the earlier version's transactions ended before the migrate
	assert queue_pending(frappe.db, NOW, MessageContext("site.test")) == 0
	assert not frappe.db.sql(f"SELECT 1 FROM `{BUNDLE_TABLE}`")


def test_rows_already_in_a_bundle_are_not_queued_twice(site):
	"""A commit of the new code before the patch ran has its bundle: the patch skips it."""
	write(frappe.db, [record("A1", "A")], NOW)  # an earlier version's row: no bundle
	frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}`")
	write(frappe.db, [record("A2", "A")], NOW)  # the new code's row, with its bundle
	frappe.db.commit()  # the earlier version's and the new code's transactions ended before the migrate

	assert queue_pending(frappe.db, NOW, MessageContext("site.test")) == 1
	frappe.db.commit()  # the patch's transaction ends, as bench migrate commits it
	refs = [n for (m,) in frappe.db.sql(f"SELECT messages FROM `{BUNDLE_TABLE}`") for n in refs_in(m)]
	names = [r[0] for r in frappe.db.sql(f"SELECT name FROM `{EVENT_LOG_TABLE}` ORDER BY name")]
	assert sorted(refs) == names  # each event in exactly one bundle


def test_a_commit_before_the_migrate_keeps_its_rows_for_the_patch(site):
	"""New code on a site whose tables are not migrated yet (no bundle table): the commit
	keeps its Event Log rows instead of losing them, and the patch gives them bundles."""
	frappe.db.sql(f"RENAME TABLE `{BUNDLE_TABLE}` TO `{BUNDLE_TABLE} (not yet)`")
	try:
		write(frappe.db, [record("A1", "A"), record("B1", "B")], NOW)
		frappe.db.commit()  # the earlier version's transaction commits without the bundle table
	finally:
		frappe.db.sql(f"RENAME TABLE `{BUNDLE_TABLE} (not yet)` TO `{BUNDLE_TABLE}`")
	assert [r[0] for r in frappe.db.sql(f"SELECT reference_name FROM `{EVENT_LOG_TABLE}` ORDER BY name")] == [
		"A1",
		"B1",
	]
	assert not frappe.db.sql(f"SELECT 1 FROM `{BUNDLE_TABLE}`")
	assert queue_pending(frappe.db, NOW, MessageContext("site.test")) == 2


def test_the_sweeper_bundles_pending_rows_no_bundle_holds_once_they_are_old_enough(site):
	"""Rows pending without a bundle (an unreadable bundle's events line, an interrupted
	upgrade) are found by the sweeper and delivered, in name order; recent rows and rows a
	bundle holds are left alone (a commit writes its rows and bundle at once)."""
	from frappe import standin

	from erpnext_streaming.delivery import jobs

	write(frappe.db, [record(f"A{i}", "A") for i in range(1, 4)], NOW)
	names = {r[1]: r[0] for r in frappe.db.sql(f"SELECT name, reference_name FROM `{EVENT_LOG_TABLE}`")}
	frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}`")  # the bundle is gone, its rows stay Queued
	write(frappe.db, [record("A4", "A")], NOW)  # a later commit, with its bundle
	frappe.db.sql(f"UPDATE `{EVENT_LOG_TABLE}` SET creation = %s", (datetime.now() - timedelta(hours=1),))
	frappe.db.sql(  # a pending row too recent to call lost
		f"UPDATE `{EVENT_LOG_TABLE}` SET creation = %s WHERE name = %s", (datetime.now(), names["A3"])
	)
	standin.set_single("Streaming Settings", {"enabled": 1, "bootstrap_servers": "127.0.0.1:9"})
	frappe.db.commit()  # the lost rows are committed before the scheduler's sweep

	jobs.sweep()
	frappe.db.commit()  # the sweep's bundles are committed, as its job commits them

	bundled = [refs_in(m) for (m,) in frappe.db.sql(f"SELECT messages FROM `{BUNDLE_TABLE}` ORDER BY name")]
	a4 = frappe.db.sql(f"SELECT name FROM `{EVENT_LOG_TABLE}` WHERE reference_name = 'A4'")[0][0]
	assert bundled == [[a4], [names["A1"], names["A2"]]]


def test_leases_and_retry_times_an_earlier_version_wrote_in_local_time_are_cleared(site):
	"""A site 5 hours east of UTC: the earlier version leased A and B and made B wait for
	its retry, in local time, so a drainer reading UTC would wait hours for both. After the
	patch every lease is given back and every retry is due now; the retry count and error
	stay, and the next claim takes both companies at once."""
	write(frappe.db, [record("A1", "A"), record("B1", "B")], NOW)
	local = datetime.now() + timedelta(hours=5)
	bundles.claim(frappe.db, "old-drainer", local + timedelta(minutes=5), local, limit=100)
	bundles.record_retry(frappe.db, "old-drainer", "B", 3, local + timedelta(minutes=10), "timeout", local)
	frappe.db.commit()  # the earlier version's transactions ended before the migrate
	utc = utc_now(frappe.db)
	assert bundles.claim(frappe.db, "new-drainer", utc + timedelta(minutes=2), utc, limit=100) == []
	frappe.db.rollback()

	utc_delivery_leases.execute()
	frappe.db.commit()  # the patch's transaction ends, as bench migrate commits it

	cursors = frappe.db.sql(
		f"SELECT name, attempts, last_error, next_attempt_at, lease_owner, lease_expires_at FROM `{CURSOR_TABLE}` "
		"ORDER BY name"
	)
	assert cursors == (("A", 0, None, None, None, None), ("B", 3, "timeout", None, None, None))
	utc = utc_now(frappe.db)
	claimed = bundles.claim(frappe.db, "new-drainer", utc + timedelta(minutes=2), utc, limit=100)
	assert sorted(b.cursor for b in claimed) == ["A", "B"]
	assert next(b.attempts for b in claimed if b.cursor == "B") == 3


def test_row_leases_and_retry_times_an_earlier_version_wrote_in_local_time_are_cleared(site):
	"""A site 5 hours east of UTC: the earlier version leased Dead row A1 for its dead-letter
	copy and wrote Failed row B1's retry time, in local time, so a drainer reading UTC would
	leave A1's copy for hours. After the patch no row is leased and no row shows a retry
	time (its company's is due now); the retry count stays, and the next dead-letter claim
	takes A1 at once."""
	write(frappe.db, [record("A1", "A"), record("B1", "B")], NOW)
	names = {r[1]: r[0] for r in frappe.db.sql(f"SELECT name, reference_name FROM `{EVENT_LOG_TABLE}`")}
	local = datetime.now() + timedelta(hours=5)
	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET status = %s, lease_owner = 'old-drainer', lease_expires_at = %s "
		"WHERE name = %s",
		(Status.DEAD, local + timedelta(minutes=5), names["A1"]),
	)
	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET status = %s, attempts = 3, next_attempt_at = %s WHERE name = %s",
		(Status.FAILED, local + timedelta(minutes=10), names["B1"]),
	)
	frappe.db.commit()  # the earlier version's transactions ended before the migrate
	utc = utc_now(frappe.db)
	assert claim_dead_letters(frappe.db, Lease("new-drainer", utc + timedelta(minutes=2)), utc, 10) == []
	frappe.db.rollback()

	utc_delivery_leases.execute()
	frappe.db.commit()  # the patch's transaction ends, as bench migrate commits it

	rows = frappe.db.sql(
		f"SELECT reference_name, status, attempts, next_attempt_at, lease_owner, lease_expires_at "
		f"FROM `{EVENT_LOG_TABLE}` ORDER BY name"
	)
	assert rows == (("A1", Status.DEAD, 0, None, None, None), ("B1", Status.FAILED, 3, None, None, None))
	utc = utc_now(frappe.db)
	copies = claim_dead_letters(frappe.db, Lease("new-drainer", utc + timedelta(minutes=2)), utc, 10)
	assert [r["name"] for r in copies] == [names["A1"]]
