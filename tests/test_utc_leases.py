"""Leases and retry times are UTC from the database's clock (`UTC_TIMESTAMP(6)`), whatever
the clock of the drainer's, the sweeper's or the requeue's host says: drainers whose Python
clocks are 5 hours apart (a site in another time zone, a worker host with a wrong clock, a
DST change) agree on when a company's lease or a Dead row's dead-letter lease ends and when
a retry is due. The other times people read (`modified`, `sent_at`, ...) stay the site's
local time."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import frappe
import pytest
from confluent_kafka import KafkaError
from delivery_support import COMPANIES, commit_transaction, cursor_leases, cursors, event
from frappe.standin import StandinDatabase

from erpnext_streaming import api
from erpnext_streaming.constants import CURSOR_TABLE, EVENT_LOG_TABLE, Status
from erpnext_streaming.delivery import signals, sweeper
from erpnext_streaming.delivery.drainer import Drainer
from erpnext_streaming.delivery.environment import DrainerConfig, SystemClock
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.delivery.outcomes import InFlight
from erpnext_streaming.delivery.policy import RetryPolicy, classify
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration

SKEW = timedelta(hours=5)
BACKOFF = 60.0
ACME = COMPANIES[0]


@pytest.fixture
def drainers(mariadb, redis_url):
	"""Makes drainers whose Python clock is `offset` away from this host's, each on a
	connection of its own; closes them at the end."""
	made: list[Drainer] = []

	def make(offset: timedelta, **config) -> Drainer:
		db = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})
		site = frappe.local.site
		drainer = Drainer(
			db=db,
			producer_factory=lambda: None,
			wake=signals.RedisWake(signals.client(redis_url, 5), site),
			clock=SystemClock(lambda: datetime.now() + offset),
			config=DrainerConfig(site=site, dead_letter_topic="", **config),
			policy=RetryPolicy(base_seconds=BACKOFF, cap_seconds=BACKOFF, max_attempts=5, jitter=0.0),
			owner=f"drainer{offset.total_seconds():+.0f}-{len(made)}-{os.getpid()}",
		)
		drainer.prepare()
		made.append(drainer)
		return drainer

	yield make
	for drainer in made:
		drainer.db.close()


def database_utc() -> datetime:
	return frappe.db.sql("SELECT UTC_TIMESTAMP(6)")[0][0]


def time_passes(column: str, seconds: float, table: str = CURSOR_TABLE) -> None:
	"""`seconds` pass on the database's clock for the `column` of `table` (the cursors')."""
	frappe.db.sql(
		f"UPDATE `{table}` SET `{column}` = `{column}` - INTERVAL %s MICROSECOND",
		(int(seconds * 1e6),),
	)
	frappe.db.commit()  # the drainers read the cursors on their own connections


def claim(drainer: Drainer) -> list:
	claimed, _ = drainer._claim(dead_letters=False)
	return claimed


@pytest.mark.parametrize(("holder", "other"), [(-SKEW, SKEW), (SKEW, -SKEW)], ids=["behind", "ahead"])
def test_a_lease_lasts_its_length_on_the_database_clock_for_drainers_with_skewed_clocks(
	site, drainers, holder, other
):
	commit_transaction([event("a1", ACME, "erpnext.utc")])
	first, second = drainers(holder), drainers(other)
	before = database_utc()
	assert [b.cursor for b in claim(first)] == [ACME]
	after = database_utc()
	lease = timedelta(seconds=first.config.lease)
	expires = cursors()[ACME]["lease_expires_at"]
	assert before + lease <= expires <= after + lease, "a lease of `lease` seconds from the database's now"

	assert claim(second) == [], "not taken before it expires"
	time_passes("lease_expires_at", first.config.lease + 1)
	assert [b.cursor for b in claim(second)] == [ACME], "taken once it expired, not hours later"
	assert cursor_leases() == {ACME: second.owner}


def timed_out(claimed: list) -> InFlight:
	"""`claimed` in flight, every event of it timed out (retriable)."""
	events = [refs_in(b.messages) for b in claimed]
	verdict = classify(KafkaError(KafkaError._MSG_TIMED_OUT))
	return InFlight(claimed, events, {n: verdict for refs in events for n in refs}, None)


@pytest.mark.parametrize(("failing", "other"), [(-SKEW, SKEW), (SKEW, -SKEW)], ids=["behind", "ahead"])
def test_a_failed_bundle_is_retried_after_its_backoff_on_the_database_clock(site, drainers, failing, other):
	commit_transaction([event("a1", ACME, "erpnext.utc")])
	first, second = drainers(failing), drainers(other, poll_seconds=600)
	backoff = timedelta(seconds=BACKOFF)
	claimed = claim(first)
	before = database_utc()
	first.finish(timed_out(claimed))
	after = database_utc()
	first._leave_quietly()  # gives its lease back: only the retry time holds the company

	due = cursors()[ACME]["next_attempt_at"]
	assert before + backoff <= due <= after + backoff, "the retry time is UTC from the database"
	((status, shown),) = frappe.db.sql(f"SELECT status, next_attempt_at FROM `{EVENT_LOG_TABLE}`")
	assert status == Status.FAILED
	assert shown == due, "the Event Log row shows its company's retry time: UTC, as the cursor's"

	assert claim(second) == [], "not retried before its backoff"
	wait = second._wait_seconds(600)
	assert BACKOFF - 10 <= wait <= BACKOFF + 1, "the drainer waits for the retry, not hours more or less"
	time_passes("next_attempt_at", BACKOFF)
	assert [b.cursor for b in claim(second)] == [ACME], "retried once its backoff is over"


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_the_sweeper_releases_the_leases_expired_on_the_database_clock(site, offset):
	frappe.db.sql(
		f"INSERT INTO `{CURSOR_TABLE}` (name, company, delivered_through, attempts, lease_owner, lease_expires_at) "
		"VALUES ('Expired', 'Expired', 0, 0, 'd1', UTC_TIMESTAMP(6) - INTERVAL 1 SECOND), "
		"('Live', 'Live', 0, 0, 'd2', UTC_TIMESTAMP(6) + INTERVAL 60 SECOND)"
	)
	frappe.db.commit()  # the leases stand committed, as the drainers that took them left them
	result = sweeper.sweep(frappe.db, datetime.now() + offset, lambda: "enqueued")
	assert (result.ran, result.released) == (True, 1)
	assert cursor_leases() == {"Live": "d2"}


def dead_rows(*refs: str) -> list[int]:
	"""Dead rows of Acme whose dead-letter copy is pending (their capture failed), committed;
	their names, in order."""
	records = [event(ref, ACME, "erpnext.utc", status=Status.DEAD, error="capture failed") for ref in refs]
	write(frappe.db, records, datetime.now())
	frappe.db.commit()  # the drainers claim on their own connections: the rows must be committed
	return [r[0] for r in frappe.db.sql(f"SELECT name FROM `{EVENT_LOG_TABLE}` ORDER BY name")]


def lease_row(name: int, owner: str, seconds: int) -> None:
	"""`owner` leases the row `name` until `seconds` from the database's now (UTC)."""
	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET lease_owner = %s, "
		"lease_expires_at = UTC_TIMESTAMP(6) + INTERVAL %s SECOND WHERE name = %s",
		(owner, seconds, name),
	)
	frappe.db.commit()  # the drainers read the lease on their own connections


def row_leases() -> dict[int, tuple[str, datetime]]:
	"""{Event Log name: (its lease's owner, its end)} of the leased rows."""
	frappe.db.commit()  # a fresh snapshot: the drainers wrote on their own connections
	return {
		name: (owner, expires)
		for name, owner, expires in frappe.db.sql(
			f"SELECT name, lease_owner, lease_expires_at FROM `{EVENT_LOG_TABLE}` WHERE lease_owner IS NOT NULL"
		)
	}


def dead_letters(drainer: Drainer) -> list[int]:
	"""The Dead rows `drainer` claims for their dead-letter copies."""
	_, rows = drainer._claim(dead_letters=True)
	return [r["name"] for r in rows]


@pytest.mark.parametrize(("holder", "other"), [(-SKEW, SKEW), (SKEW, -SKEW)], ids=["behind", "ahead"])
def test_a_dead_letter_lease_lasts_its_length_on_the_database_clock_for_drainers_with_skewed_clocks(
	site, drainers, holder, other
):
	(broken,) = dead_rows("broken")
	first, second = drainers(holder), drainers(other)
	before = database_utc()
	assert dead_letters(first) == [broken]
	after = database_utc()
	lease = timedelta(seconds=first.config.lease)
	owner, expires = row_leases()[broken]
	assert owner == first.owner
	assert before + lease <= expires <= after + lease, "a lease of `lease` seconds from the database's now"

	assert dead_letters(second) == [], "not taken before it expires"
	time_passes("lease_expires_at", first.config.lease + 1, EVENT_LOG_TABLE)
	assert dead_letters(second) == [broken], "taken once it expired, not hours later"
	assert row_leases()[broken][0] == second.owner


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_the_sweeper_releases_the_row_leases_expired_on_the_database_clock(site, offset):
	"""d1's lease expired a second ago; d2 and d3 lease theirs for a minute more, and d3's
	process is gone. The sweeper frees d1's and d3's, never the live d2's."""
	expired, live, orphaned = dead_rows("expired", "live", "orphaned")
	lease_row(expired, "d1", -1)
	lease_row(live, "d2", 60)
	lease_row(orphaned, "d3", 60)
	result = sweeper.sweep(
		frappe.db, datetime.now() + offset, lambda: "enqueued", lambda owner: owner != "d3"
	)
	assert (result.ran, result.released) == (True, 2), "d1's expired lease and the dead d3's"
	assert {name: owner for name, (owner, _) in row_leases().items()} == {live: "d2"}
	assert result.pending, "the released rows' copies are pending"


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_requeue_leaves_the_rows_leased_on_the_database_clock_alone_whatever_the_sites_clock(
	site, monkeypatch, offset
):
	monkeypatch.setattr(api, "now_datetime", lambda: datetime.now() + offset)
	leased, expired = dead_rows("leased", "expired")
	lease_row(leased, "d1", 60)  # its dead-letter copy is on its way
	lease_row(expired, "d2", -1)  # its drainer died
	with pytest.raises(frappe.ValidationError, match="being delivered right now"):
		api.requeue(names=[leased])
	assert api.requeue(filters={"status": "Dead"}) == {"requeued": 1, "names": [expired]}
