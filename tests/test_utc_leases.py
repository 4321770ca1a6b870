"""Leases and retry times are UTC from the database's clock (`UTC_TIMESTAMP(6)`), whatever
the clock of the drainer's or the sweeper's host says: drainers whose Python clocks are
5 hours apart (a site in another time zone, a worker host with a wrong clock, a DST change)
agree on when a company's lease ends and when its retry is due. The times people read
(the Event Log's) stay the site's local time."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import frappe
import pytest
from confluent_kafka import KafkaError
from delivery_support import COMPANIES, commit_transaction, cursor_leases, cursors, event
from frappe.standin import StandinDatabase

from erpnext_streaming.constants import CURSOR_TABLE, EVENT_LOG_TABLE, Status
from erpnext_streaming.delivery import signals, sweeper
from erpnext_streaming.delivery.drainer import Drainer
from erpnext_streaming.delivery.environment import DrainerConfig, SystemClock
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.delivery.outcomes import InFlight
from erpnext_streaming.delivery.policy import RetryPolicy, classify

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


def time_passes(column: str, seconds: float) -> None:
	"""`seconds` pass on the database's clock for the cursors' `column`."""
	frappe.db.sql(
		f"UPDATE `{CURSOR_TABLE}` SET `{column}` = `{column}` - INTERVAL %s MICROSECOND",
		(int(seconds * 1e6),),
	)
	frappe.db.commit()


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
	before, shown_before = database_utc(), first.clock.now()
	first.finish(timed_out(claimed))
	after, shown_after = database_utc(), first.clock.now()
	first._leave_quietly()  # gives its lease back: only the retry time holds the company

	due = cursors()[ACME]["next_attempt_at"]
	assert before + backoff <= due <= after + backoff, "the retry time is UTC from the database"
	((status, shown),) = frappe.db.sql(f"SELECT status, next_attempt_at FROM `{EVENT_LOG_TABLE}`")
	assert status == Status.FAILED
	assert shown_before + backoff <= shown <= shown_after + backoff, "the Event Log's is the site's time"

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
	frappe.db.commit()
	result = sweeper.sweep(frappe.db, datetime.now() + offset, lambda: "enqueued")
	assert (result.ran, result.released) == (True, 1)
	assert cursor_leases() == {"Live": "d2"}
