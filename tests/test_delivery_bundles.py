"""The delivery queue on real MariaDB (delivery/bundles.py): bundles claimed per company
after its cursor, one lease per company on its cursor, receipts and cursors recorded,
receipts settled into the Event Log; and the Event Log outcomes the drainer records
beside them (outbox/outcomes.py: Failed / Dead rows, dead-letter copies).

Includes the proof that claiming, recording and settling never block the user's INSERTs
(issue "Delivery", point 4), with a control showing a naive locking read does block.

Commits: every test has a database of its own; a `frappe.db.commit()` here ends a user's
or the drainer's transaction, as they do, so the next statement sees a fresh snapshot and
other connections see the rows.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import frappe
import pymysql
import pytest
from delivery_support import CODEC, event, unsettled
from frappe.standin import StandinDatabase

from erpnext_streaming.constants import BUNDLE_TABLE, CURSOR_TABLE, EVENT_LOG_TABLE, RECEIPT_TABLE, Status
from erpnext_streaming.delivery import bundles, sweeper
from erpnext_streaming.delivery.messages import read
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.outbox.mariadb import get_lock, lock_name, release_lock, use_read_committed
from erpnext_streaming.outbox.outcomes import (
	EVENT_LOG_INDEXES,
	OLD_PENDING_INDEX,
	claim_dead_letters,
	dead_letters_pending,
	mark_dead_lettered,
	mark_unsent,
	release_expired_leases,
)
from erpnext_streaming.outbox.records import (
	LAST_ERROR_LIMIT,
	NO_COMPANY_BUCKET,
	NO_CONTEXT,
	Lease,
	OutboxRecord,
	Published,
	Unsent,
)
from erpnext_streaming.outbox.requeue import requeue
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration

# the times passed stand for both clocks: the site's (`modified`, `sent_at`, ...) and the
# database's UTC (every lease and retry time, the cursors' and the Event Log rows')
NOW = datetime(2026, 11, 23, 10, 0, 0)
LEASE = timedelta(seconds=120)
UNTIL = NOW + LEASE
LATER = NOW + timedelta(minutes=3)


def record(ref: str, company: str, status: str = Status.QUEUED) -> OutboxRecord:
	return event(
		ref,
		company,
		"erpnext.gl-entry",
		status=status,
		error="capture failed" if status == Status.DEAD else "",
	)


def commit(*refs: tuple[str, str], db=None) -> None:
	"""ONE user transaction writing the events `refs` ((reference, company), ...)."""
	db = db or frappe.db
	write(db, [record(ref, company) for ref, company in refs], NOW)
	db.commit()


def each_in_its_own_transaction(*refs: tuple[str, str]) -> None:
	for ref in refs:
		commit(ref)


def names_of(*refs: str) -> list[int]:
	"""The Event Log names of `refs`, in the order given."""
	found = dict(
		frappe.db.sql(
			f"SELECT reference_name, name FROM `{EVENT_LOG_TABLE}` WHERE reference_name IN ({', '.join(['%s'] * len(refs))})",
			refs,
		)
	)
	return [found[ref] for ref in refs]


def bundle_of(ref: str) -> int:
	"""The bundle holding the event `ref`."""
	(name,) = names_of(ref)
	for bundle, messages in frappe.db.sql(f"SELECT name, messages FROM `{BUNDLE_TABLE}` ORDER BY name"):
		if name in refs_in(messages):
			return bundle
	raise AssertionError(f"no bundle holds {ref}")


def refs(claimed: list[bundles.Claimed]) -> list[str]:
	"""The claimed events' references, bundle after bundle, in each bundle's order."""
	names = [n for bundle in claimed for n in refs_in(bundle.messages)]
	if not names:
		return []
	by_name = dict(
		frappe.db.sql(
			f"SELECT name, reference_name FROM `{EVENT_LOG_TABLE}` WHERE name IN ({', '.join(['%s'] * len(names))})",
			names,
		)
	)
	return [by_name[n] for n in names]


def claim(owner: str, limit: int = 100, now: datetime = NOW, after=None) -> list[bundles.Claimed]:
	"""`owner`'s claim in its own transaction, as the drainer runs it."""
	got = bundles.claim(frappe.db, owner, now + LEASE, now, limit, after=after)
	frappe.db.commit()
	return got


def through(claimed: list[bundles.Claimed]) -> dict[str, int]:
	"""{cursor: last claimed bundle}: what the drainer records when all of them were delivered."""
	last: dict[str, int] = {}
	for bundle in claimed:
		last[bundle.cursor] = max(last.get(bundle.cursor, 0), bundle.name)
	return last


def cursors() -> dict[str, dict]:
	frappe.db.commit()  # a fresh snapshot
	return {
		r.name: r
		for r in frappe.db.sql(
			f"SELECT name, delivered_through, attempts, next_attempt_at, last_error, lease_owner, lease_expires_at "
			f"FROM `{CURSOR_TABLE}`",
			as_dict=True,
		)
	}


def cursor(company: str) -> dict:
	"""The cursor of `company` (matched by the database, as every query does)."""
	frappe.db.commit()
	(row,) = frappe.db.sql(
		f"SELECT name, delivered_through, attempts, next_attempt_at, last_error, lease_owner, lease_expires_at "
		f"FROM `{CURSOR_TABLE}` WHERE name = %s",
		(company,),
		as_dict=True,
	)
	return row


def state(name: int):
	frappe.db.commit()  # a fresh snapshot
	return frappe.db.sql(
		"SELECT status, attempts, lease_owner, lease_expires_at, kafka_partition, kafka_offset, sent_at, "
		f"next_attempt_at, last_error, dead_lettered_at, modified FROM `{EVENT_LOG_TABLE}` WHERE name = %s",
		(name,),
		as_dict=True,
	)[0]


def table(name: str) -> list:
	frappe.db.commit()
	return frappe.db.sql(f"SELECT * FROM `{name}` ORDER BY name", as_dict=True)


def deliver(claimed: list[bundles.Claimed], now: datetime = NOW, partition: int = 0) -> list[Published]:
	"""Record every claimed event as delivered (offsets 0, 1, ...), as the drainer does."""
	names = [n for bundle in claimed for n in refs_in(bundle.messages)]
	sent = [Published(n, partition, offset) for offset, n in enumerate(names)]
	bundles.record_delivered(frappe.db, sent, through(claimed), now)
	frappe.db.commit()
	return sent


class CountingDb:
	def __init__(self, db):
		self.db, self.statements = db, []

	def sql(self, query, values=(), as_dict=False):
		self.statements.append(query)
		return self.db.sql(query, values, as_dict=as_dict)


# -- claiming -------------------------------------------------------------------------


def test_claim_takes_each_companys_bundles_in_name_order_under_one_lease_on_its_cursor(site):
	commit(("a1", "A"), ("b1", "B"))
	commit(("a2", "A"), ("x1", ""))
	commit(("a3", "A"))
	got = claim("d1")
	assert refs(got) == ["a1", "b1", "a2", "x1", "a3"]
	assert [b.name for b in got] == sorted(b.name for b in got)
	assert [b.cursor for b in got] == ["A", "B", "A", NO_COMPANY_BUCKET, "A"]
	assert [b.events for b in got] == [1] * 5 and [b.attempts for b in got] == [0] * 5
	leases = {name: (c.lease_owner, c.lease_expires_at, c.delivered_through) for name, c in cursors().items()}
	assert leases == {"A": ("d1", UNTIL, 0), "B": ("d1", UNTIL, 0), "-": ("d1", UNTIL, 0)}
	# nobody claims a company in flight: another drainer, nor its own claimer past its claims
	assert claim("d2") == []
	assert claim("d1", after=through(got)) == []


def test_a_claimed_bundle_carries_its_events_as_ready_messages(site):
	commit(("a1", "A"), ("a2", "A"))
	(bundle,) = claim("d1")
	a1, a2 = names_of("a1", "a2")
	messages: list = []
	assert read(bundle.messages, None, messages, {}) == [a1, a2]
	assert [m.ref for m in messages] == [a1, a2] and bundle.events == 2
	assert [CODEC.reference(m.value) for m in messages] == ["a1", "a2"]
	assert {(m.topic, m.key) for m in messages} == {("erpnext.gl-entry", "A")}
	assert [dict(m.headers)["es_company_sequence"] for m in messages] == ["1", "2"]


def test_a_company_is_never_leased_to_two_drainers_at_once(site):
	each_in_its_own_transaction(("a1", "A"), ("a2", "A"))
	first = claim("d1")
	assert refs(first) == ["a1", "a2"]
	each_in_its_own_transaction(("a3", "A"), ("b1", "B"))
	second = claim("d2")
	assert refs(second) == ["b1"]  # a3 waits behind d1's lease on A
	assert {n: c.lease_owner for n, c in cursors().items()} == {"A": "d1", "B": "d2"}
	deliver(first)
	deliver(second)
	bundles.release(frappe.db, "d1")
	frappe.db.commit()
	assert refs(claim("d2")) == ["a3"]  # A is free; B is delivered


def test_the_limit_keeps_each_company_a_prefix(site):
	each_in_its_own_transaction(*[(f"{c.lower()}{i}", c) for i in range(1, 4) for c in "ABC"])
	first = claim("d1", limit=4)
	assert refs(first) == ["a1", "b1", "c1", "a2"]
	assert claim("d2", limit=10) == []  # every company is d1's
	deliver(first)
	bundles.release(frappe.db, "d1")
	frappe.db.commit()
	assert refs(claim("d2", limit=10)) == ["b2", "c2", "a3", "b3", "c3"]


def test_a_company_whose_next_bundle_does_not_fit_is_cut_there(site):
	commit(("a1", "A"))
	commit(("a2", "A"), ("a3", "A"), ("a4", "A"))
	commit(("a5", "A"))
	commit(("b1", "B"))
	# a2's bundle (3 events) would go past the limit: A stops before it, a5 stays behind it
	assert refs(claim("d1", limit=3)) == ["a1", "b1"]


def test_a_bundle_larger_than_the_limit_is_claimed_whole_and_alone(site):
	commit(*[(f"a{i}", "A") for i in range(5)])
	commit(("b1", "B"))
	got = claim("d1", limit=2)
	assert refs(got) == [f"a{i}" for i in range(5)] and got[0].events == 5
	assert "B" not in cursors()  # B was not leased: nothing of it was claimed


def test_a_company_waiting_for_its_retry_yields_nothing_until_it_is_due(site):
	each_in_its_own_transaction(("a1", "A"), ("a2", "A"), ("b1", "B"))
	first = claim("d1")
	due = NOW + timedelta(seconds=30)
	deliver([b for b in first if b.cursor == "B"])
	bundles.record_retry(frappe.db, "d1", "A", 1, due, "_MSG_TIMED_OUT", NOW)
	bundles.release(frappe.db, "d1")
	frappe.db.commit()
	a = cursor("A")
	assert (a.attempts, a.next_attempt_at, a.last_error, a.delivered_through) == (1, due, "_MSG_TIMED_OUT", 0)
	each_in_its_own_transaction(("a3", "A"), ("b2", "B"))

	assert refs(claim("d1")) == ["b2"]  # A waits for its retry
	assert refs(claim("d3", now=due - timedelta(seconds=1))) == []
	got = claim("d2", now=due)  # b2 is in flight (d1's lease)
	assert refs(got) == ["a1", "a2", "a3"]
	assert [b.attempts for b in got] == [1, 0, 0]  # the retry state belongs to the first bundle


def test_a_retry_is_recorded_only_by_the_drainer_that_leases_the_company(site):
	commit(("a1", "A"))
	claim("d1")
	bundles.record_retry(frappe.db, "someone-else", "A", 4, LATER, "late report", NOW)
	frappe.db.commit()
	assert (cursor("A").attempts, cursor("A").next_attempt_at) == (0, None)


def test_an_expired_lease_is_taken_over_and_released_by_the_sweeper(site):
	each_in_its_own_transaction(("a1", "A"), ("b1", "B"))
	claim("dead-drainer")
	after = NOW + LEASE + timedelta(seconds=1)
	assert refs(claim("d2", limit=1, now=after)) == ["a1"]  # expired: free for anyone
	assert (cursor("A").lease_owner, cursor("A").lease_expires_at) == ("d2", after + LEASE)

	assert bundles.release_expired(frappe.db, after) == ["B"]  # d2's fresh lease stays
	frappe.db.commit()
	assert cursor("B").lease_owner is None and cursor("B").lease_expires_at is None
	assert cursor("A").lease_owner == "d2"
	assert bundles.release_expired(frappe.db, after) == []  # idempotent


def test_a_claimer_continues_after_its_own_bundles_in_flight(site):
	each_in_its_own_transaction(("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("a3", "A"))
	first = claim("d1", limit=2)
	assert refs(first) == ["a1", "b1"]
	assert claim("d2") == []  # both companies are in flight
	assert refs(claim("d1", after=through(first))) == ["a2", "b2", "a3"]


def test_after_is_honoured_only_while_the_claimer_held_the_lease_all_along(site):
	each_in_its_own_transaction(("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("a3", "A"))
	first = claim("d1", limit=2)
	assert refs(first) == ["a1", "b1"]
	# d1 stalls past its lease; d2 takes A over, fails a1 and lets A go
	expired = NOW + LEASE + timedelta(seconds=1)
	assert refs(claim("d2", limit=1, now=expired)) == ["a1"]
	bundles.record_retry(frappe.db, "d2", "A", 1, expired, "_MSG_TIMED_OUT", expired)
	bundles.release(frappe.db, "d2")
	frappe.db.commit()

	got = claim("d1", now=expired, after=through(first))
	# A starts again from its cursor (d1's a1 may never have reached Kafka); B, which
	# nobody took, goes on after d1's b1
	assert refs(got) == ["a1", "a2", "b2", "a3"]
	assert [(b.cursor, b.attempts) for b in got][:2] == [("A", 1), ("A", 0)]


def test_a_drainer_knows_which_companies_it_still_leases_and_renews_only_those(site):
	each_in_its_own_transaction(("a1", "A"), ("b1", "B"), ("c1", "C"))
	claim("d1")
	assert bundles.still_leased(frappe.db, "d1", ["A", "B", "C"]) == {"A", "B", "C"}
	frappe.db.sql(f"UPDATE `{CURSOR_TABLE}` SET lease_owner = 'd2' WHERE name = 'B'")  # taken over
	frappe.db.commit()
	assert bundles.still_leased(frappe.db, "d1", ["A", "B"]) == {"A"}
	assert bundles.still_leased(frappe.db, "d1", []) == set()

	assert bundles.renew(frappe.db, "d1", ["A", "B"], LATER) == {"A"}
	frappe.db.commit()
	assert [(cursor(c).lease_owner, cursor(c).lease_expires_at) for c in "ABC"] == [
		("d1", LATER), ("d2", UNTIL), ("d1", UNTIL)]  # fmt: skip

	bundles.release(frappe.db, "d1", ["A"])
	frappe.db.commit()
	assert [cursor(c).lease_owner for c in "ABC"] == [None, "d2", "d1"]
	bundles.release(frappe.db, "d1", [])  # nothing named: nothing released
	frappe.db.commit()
	assert cursor("C").lease_owner == "d1"
	bundles.release(frappe.db, "d1")  # all of d1's leases, never another drainer's
	frappe.db.commit()
	assert [cursor(c).lease_owner for c in "ABC"] == [None, "d2", None]


# -- recording and settling -----------------------------------------------------------


def test_a_delivered_batch_is_one_receipt_and_moves_the_cursors_in_two_statements(site):
	each_in_its_own_transaction(("a1", "A"), ("b1", "B"), ("a2", "A"))
	got = claim("d1")
	a1, b1, a2 = names_of("a1", "b1", "a2")
	counting = CountingDb(frappe.db)
	sent = [Published(a1, 3, 10), Published(b1, 5, 0), Published(a2, 3, 11)]
	bundles.record_delivered(counting, sent, through(got), NOW)
	frappe.db.commit()
	assert len(counting.statements) == 2
	(receipt,) = table(RECEIPT_TABLE)
	assert receipt.events == 3 and receipt.creation == NOW
	assert json.loads(receipt.positions) == [[a1, 3, 10], [b1, 5, 0], [a2, 3, 11]]
	assert cursor("A").delivered_through == bundle_of("a2")
	assert cursor("B").delivered_through == bundle_of("b1")
	assert cursor("A").lease_owner == "d1"  # leases are the drainer's to release
	assert {state(n).status for n in (a1, b1, a2)} == {Status.QUEUED}  # until settled
	assert unsettled(frappe.db) == 3
	assert not bundles.deliverable(frappe.db, NOW + LEASE)


def test_a_batch_without_delivered_events_moves_the_cursor_without_a_receipt(site):
	commit(("a1", "A"))
	got = claim("d1")
	bundles.record_delivered(frappe.db, [], through(got), NOW)  # its only event went Dead
	frappe.db.commit()
	assert table(RECEIPT_TABLE) == []
	assert cursor("A").delivered_through == got[0].name


def test_a_cursor_never_moves_back_and_a_late_record_keeps_a_newer_retry_state(site):
	each_in_its_own_transaction(("a1", "A"), ("a2", "A"), ("a3", "A"))
	first, second, third = claim("d1")
	bundles.record_delivered(frappe.db, [], {"A": second.name}, NOW)
	bundles.record_retry(frappe.db, "d1", "A", 2, LATER, "_MSG_TIMED_OUT", NOW)
	frappe.db.commit()

	bundles.record_delivered(frappe.db, [], {"A": first.name}, NOW)  # a late drainer's record
	frappe.db.commit()
	a = cursor("A")
	assert (a.delivered_through, a.attempts, a.next_attempt_at, a.last_error) == (
		second.name, 2, LATER, "_MSG_TIMED_OUT")  # fmt: skip

	bundles.record_delivered(frappe.db, [], {"A": third.name}, NOW)  # the retried bundle went through
	frappe.db.commit()
	a = cursor("A")
	assert (a.delivered_through, a.attempts, a.next_attempt_at, a.last_error) == (third.name, 0, None, "")


def test_settle_marks_the_rows_sent_at_the_receipt_time_and_deletes_what_is_done(site):
	each_in_its_own_transaction(("a1", "A"), ("b1", "B"), ("a2", "A"))
	a1, b1, a2 = names_of("a1", "b1", "a2")
	got = claim("d1")
	bundles.record_delivered(
		frappe.db, [Published(a1, 3, 10), Published(b1, 5, 0), Published(a2, 3, 11)], through(got), NOW
	)
	frappe.db.commit()
	commit(("a3", "A"))  # not delivered yet
	frappe.db.sql(
		f"UPDATE `{EVENT_LOG_TABLE}` SET lease_owner = 'x', lease_expires_at = %s, next_attempt_at = %s "
		"WHERE name = %s",
		(UNTIL, NOW, a1),
	)
	frappe.db.commit()

	assert bundles.settle(frappe.db, LATER) == 3
	frappe.db.commit()
	got = [state(n) for n in (a1, b1, a2)]
	assert [(s.status, s.kafka_partition, s.kafka_offset) for s in got] == [
		(Status.SENT, 3, 10), (Status.SENT, 5, 0), (Status.SENT, 3, 11)]  # fmt: skip
	assert all(s.sent_at == NOW and s.modified == LATER for s in got)
	assert all(s.lease_owner is None and s.next_attempt_at is None for s in got)
	assert table(RECEIPT_TABLE) == []
	assert [b.name for b in table(BUNDLE_TABLE)] == [bundle_of("a3")]  # the bundles passed are gone
	assert state(names_of("a3")[0]).status == Status.QUEUED
	assert unsettled(frappe.db) == 0
	assert bundles.settle(frappe.db, LATER) == 0


def test_settle_works_through_receipts_oldest_first_a_chunk_at_a_time(site):
	each_in_its_own_transaction(("a1", "A"), ("a2", "A"))
	a1, a2 = names_of("a1", "a2")
	first, second = claim("d1")
	bundles.record_delivered(frappe.db, [Published(a1, 0, 1)], {"A": first.name}, NOW)
	bundles.record_delivered(frappe.db, [Published(a2, 0, 2)], {"A": second.name}, LATER)
	frappe.db.commit()
	assert bundles.settle(frappe.db, LATER, receipts=1) == 1
	frappe.db.commit()
	assert (state(a1).status, state(a2).status) == (Status.SENT, Status.QUEUED)
	assert bundles.settle(frappe.db, LATER, receipts=1) == 1
	frappe.db.commit()
	assert (state(a2).status, state(a2).sent_at) == (Status.SENT, LATER)


def test_settle_marks_queued_and_failed_rows_sent_and_never_a_dead_or_sent_row(site):
	"""A receipt says the message is in Kafka, whoever sent it: a row another drainer marked
	Failed, or that was requeued since (Queued again, to be sent again: at least once),
	becomes Sent; a Dead row stays Dead, and a Sent row keeps its first position."""
	commit(("failed", "A"), ("requeued", "A"), ("dead", "A"), ("sent", "A"))
	failed, requeued, dead, sent = names_of("failed", "requeued", "dead", "sent")
	(bundle,) = claim("d1")
	bundles.record_delivered(frappe.db, [Published(sent, 1, 1)], {}, NOW)
	bundles.settle(frappe.db, NOW)
	mark_unsent(
		frappe.db,
		[
			Unsent(failed, Status.FAILED, 1, "timeout", next_attempt_at=LATER),
			Unsent(requeued, Status.DEAD, 1, "refused", dead_letter=Published(requeued, 0, 4)),
			Unsent(dead, Status.DEAD, 1, "refused", dead_letter=Published(dead, 0, 5)),
		],
		NOW,
	)
	frappe.db.commit()
	requeue(frappe.db, [requeued], NOW)
	frappe.db.commit()
	late = [
		Published(failed, 2, 20),
		Published(requeued, 2, 21),
		Published(dead, 2, 22),
		Published(sent, 2, 23),
	]
	bundles.record_delivered(frappe.db, late, {"A": bundle.name}, LATER)
	assert bundles.settle(frappe.db, LATER) == 4
	frappe.db.commit()
	assert [(state(n).status, state(n).kafka_offset) for n in (failed, requeued, dead, sent)] == [
		(Status.SENT, 20), (Status.SENT, 21), (Status.DEAD, 5), (Status.SENT, 1)]  # fmt: skip
	assert state(failed).next_attempt_at is None


def test_undelivered_events_are_recorded_failed_or_dead_in_one_statement(site):
	commit(("a1", "A"), ("a2", "A"), ("b1", "B"))
	a1, a2, b1 = names_of("a1", "a2", "b1")
	claim("d1")
	due = NOW + timedelta(seconds=9)
	counting = CountingDb(frappe.db)
	mark_unsent(
		counting,
		[
			Unsent(a1, Status.FAILED, 1, "_MSG_TIMED_OUT: Local: Message timed out", next_attempt_at=due),
			Unsent(a2, Status.DEAD, 1, "MSG_SIZE_TOO_LARGE", dead_letter=Published(a2, 0, 4)),
			Unsent(b1, Status.DEAD, 1, "x" * 5000),
		],
		NOW,
	)
	frappe.db.commit()
	assert len(counting.statements) == 1
	s1, s2, s3 = state(a1), state(a2), state(b1)
	assert (s1.status, s1.attempts, s1.next_attempt_at, s1.last_error[:14]) == (
		Status.FAILED, 1, due, "_MSG_TIMED_OUT")  # fmt: skip
	assert (s2.status, s2.dead_lettered_at, s2.kafka_partition, s2.kafka_offset) == (Status.DEAD, NOW, 0, 4)
	assert s3.status == Status.DEAD and s3.dead_lettered_at is None  # its copy is still to be sent
	assert len(s3.last_error) == LAST_ERROR_LIMIT  # truncated
	assert dead_letters_pending(frappe.db, NOW)


def test_a_sent_row_is_never_turned_back_by_a_late_failure(site):
	commit(("a1", "A"))
	(a1,) = names_of("a1")
	deliver(claim("d1"))
	bundles.settle(frappe.db, NOW)
	mark_unsent(frappe.db, [Unsent(a1, Status.FAILED, 2, "late report", next_attempt_at=LATER)], NOW)
	frappe.db.commit()
	assert (state(a1).status, state(a1).attempts) == (Status.SENT, 0)


# -- dead letters, pending work -------------------------------------------------------


def test_dead_rows_from_capture_have_no_bundle_and_wait_for_their_dead_letter_copy(site):
	write(frappe.db, [record("ok", "A"), record("broken", "A", Status.DEAD)], NOW)
	frappe.db.commit()
	ok, broken = names_of("ok", "broken")
	assert sweeper.has_pending_work(frappe.db, NOW)
	got = claim("d1")
	entries = [n for b in got for n in refs_in(b.messages)]
	assert entries == [ok]  # a Dead row has no entry, and blocks nothing
	copies = claim_dead_letters(frappe.db, Lease("d1", UNTIL), NOW, 10)
	frappe.db.commit()
	assert [r["name"] for r in copies] == [broken] and copies[0]["last_error"] == "capture failed"
	assert (state(broken).lease_owner, state(broken).lease_expires_at) == ("d1", UNTIL)
	assert claim_dead_letters(frappe.db, Lease("d2", UNTIL), NOW, 10) == []  # leased
	assert not sweeper.has_pending_work(frappe.db, NOW)  # both in flight

	mark_dead_lettered(frappe.db, [Published(broken, 2, 40)], NOW)
	deliver(got)
	frappe.db.commit()
	s = state(broken)
	assert (s.status, s.dead_lettered_at, s.kafka_partition, s.kafka_offset, s.lease_owner) == (
		Status.DEAD, NOW, 2, 40, None)  # fmt: skip
	assert claim_dead_letters(frappe.db, Lease("d2", UNTIL), NOW, 10) == []
	assert not sweeper.has_pending_work(frappe.db, NOW)


def test_a_dead_letter_copy_leased_by_a_drainer_that_died_is_released_and_taken_again(site):
	write(frappe.db, [record("broken", "A", Status.DEAD)], NOW)
	frappe.db.commit()
	(broken,) = names_of("broken")
	claim_dead_letters(frappe.db, Lease("dead-drainer", UNTIL), NOW, 10)
	frappe.db.commit()
	assert release_expired_leases(frappe.db, UNTIL) == [broken]
	frappe.db.commit()
	assert release_expired_leases(frappe.db, UNTIL) == []  # idempotent
	assert [r["name"] for r in claim_dead_letters(frappe.db, Lease("d2", LATER), UNTIL, 10)] == [broken]


def test_pending_work_and_the_next_due_attempt(site):
	assert not sweeper.has_pending_work(frappe.db, NOW) and bundles.next_attempt_due(frappe.db) is None
	commit(("a1", "A"))
	assert sweeper.has_pending_work(frappe.db, NOW)
	claim("d1")
	assert not sweeper.has_pending_work(frappe.db, NOW), "a1 is in flight"
	due = NOW + timedelta(minutes=5)
	bundles.record_retry(frappe.db, "d1", "A", 1, due, "timeout", NOW)
	bundles.release(frappe.db, "d1")
	frappe.db.commit()
	assert not sweeper.has_pending_work(frappe.db, NOW), "A waits for its retry"
	commit(("a2", "A"))
	assert not sweeper.has_pending_work(frappe.db, NOW), "a2 waits behind a1: no drainer needed yet"
	commit(("b1", "B"))
	assert sweeper.has_pending_work(frappe.db, NOW)
	assert bundles.next_attempt_due(frappe.db) == due
	claim("d1")
	assert not sweeper.has_pending_work(frappe.db, NOW), "b1 is in flight"
	assert sweeper.has_pending_work(frappe.db, due), "A's retry is due"
	expired = NOW + LEASE + timedelta(seconds=1)
	assert sweeper.has_pending_work(frappe.db, expired), "d1's lease on B expired"


def test_the_oldest_undelivered_bundle_is_the_first_after_its_cursor(site):
	assert bundles.oldest_undelivered(frappe.db) is None
	write(frappe.db, [record("a1", "A")], NOW)
	write(frappe.db, [record("b1", "B")], LATER)
	frappe.db.commit()
	assert bundles.oldest_undelivered(frappe.db) == NOW
	deliver([b for b in claim("d1") if b.cursor == "A"])
	assert bundles.oldest_undelivered(frappe.db) == LATER  # A's bundle is delivered, not settled yet


# -- requeue, retry now ---------------------------------------------------------------


def test_retry_now_makes_a_waiting_company_due_with_a_fresh_attempt_count(site):
	commit(("a1", "Acme"))
	claim("d1")
	bundles.record_retry(frappe.db, "d1", "Acme", 7, LATER, "broker down", NOW)
	bundles.release(frappe.db, "d1")
	frappe.db.commit()
	assert claim("d2") == []
	bundles.retry_now(frappe.db, ["ACME "], NOW)  # the database's name for the same company
	frappe.db.commit()
	got = claim("d2")
	assert refs(got) == ["a1"] and got[0].attempts == 0
	assert cursor("Acme").next_attempt_at is None


def test_requeued_dead_rows_go_into_a_new_bundle_at_the_end_of_their_companys_queue(site):
	each_in_its_own_transaction(("a1", "A"), ("a2", "A"))
	a1, a2 = names_of("a1", "a2")
	got = claim("d1")
	mark_unsent(frappe.db, [Unsent(a1, Status.DEAD, 1, "refused", dead_letter=Published(a1, 0, 1))], NOW)
	bundles.record_delivered(frappe.db, [Published(a2, 0, 7)], through(got), NOW)  # Dead holds nothing back
	bundles.release(frappe.db, "d1")
	frappe.db.commit()
	commit(("a3", "A"))

	assert requeue(frappe.db, [a1], LATER) == [a1]
	frappe.db.commit()
	assert (state(a1).status, state(a1).dead_lettered_at) == (Status.QUEUED, None)
	claimed = claim("d2")
	assert refs(claimed) == ["a3", "a1"]
	assert claimed[-1].name == max(b.name for b in table(BUNDLE_TABLE))


def test_queue_rows_writes_bundles_for_existing_rows_in_name_order(site):
	commit(("a1", "A"), ("b1", "B"), ("a2", "A"))
	a1, b1, a2 = names_of("a1", "b1", "a2")
	frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}`")  # rows an earlier version left pending
	frappe.db.commit()
	assert bundles.queue_rows(frappe.db, [a1, b1, a2], NOW, NO_CONTEXT, chunk=2) == 3
	frappe.db.commit()
	assert [(b.company, b.events) for b in table(BUNDLE_TABLE)] == [("A", 1), ("B", 1), ("A", 1)]
	assert refs(claim("d1")) == ["a1", "b1", "a2"]


# -- collation ------------------------------------------------------------------------


def test_companies_the_database_holds_as_one_name_share_one_cursor_and_go_in_name_order(site):
	commit(("a1", "Acme"))
	commit(("a2", "ACME "))
	commit(("a3", "acme"))
	got = claim("d1")
	assert refs(got) == ["a1", "a2", "a3"]
	assert len({b.cursor for b in got}) == 1 and len(cursors()) == 1
	assert claim("d2") == []  # one company, one lease
	deliver(got)
	assert not bundles.deliverable(frappe.db, NOW + LEASE)
	bundles.settle(frappe.db, NOW)
	frappe.db.commit()
	assert table(BUNDLE_TABLE) == []


def test_one_transaction_of_companies_the_database_holds_as_one_name_is_one_bundle(site):
	"""Their events share one sequence: as two bundles they would be delivered 1, 3, 2."""
	commit(("a1", "Acme"), ("a2", "ACME "), ("b1", "B"), ("a3", "acme"))
	assert [(b.events) for b in table(BUNDLE_TABLE)] == [3, 1]
	assert refs(claim("d1")) == ["a1", "a2", "a3", "b1"]


def test_requeued_rows_of_companies_the_database_holds_as_one_name_stay_in_name_order(site):
	each_in_its_own_transaction(("a1", "Acme"), ("a2", "ACME "), ("a3", "Acme"))
	names = names_of("a1", "a2", "a3")
	frappe.db.sql(f"DELETE FROM `{BUNDLE_TABLE}`")
	frappe.db.commit()
	bundles.queue_rows(frappe.db, names, NOW, NO_CONTEXT)
	frappe.db.commit()
	assert refs(claim("d1")) == ["a1", "a2", "a3"]


# -- locks ----------------------------------------------------------------------------


def _connection(mariadb, read_committed: bool) -> StandinDatabase:
	db = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})
	db.sql("SET SESSION innodb_lock_wait_timeout = 1")
	if read_committed:
		use_read_committed(db)
	db.commit()
	return db


def _user_transaction_commits(user: StandinDatabase, *refs: tuple[str, str]) -> bool:
	"""A user's transaction writing events; False if it had to wait for a lock (1205)."""
	try:
		commit(*refs, db=user)
		return True
	except pymysql.err.OperationalError as e:
		assert e.args[0] == 1205, e
		user.rollback()
		return False


def test_claiming_recording_and_settling_never_block_the_users_inserts(site, mariadb):
	each_in_its_own_transaction(("a1", "A"), ("b1", "B"))
	drainer, user = _connection(mariadb, True), _connection(mariadb, False)
	try:
		lock = lock_name(drainer, "claim")
		assert get_lock(drainer, lock, 1)
		got = bundles.claim(drainer, "d1", UNTIL, NOW, 100)  # transaction open: cursor rows locked
		assert [b.cursor for b in got] == ["A", "B"]
		# same companies, a new company, and both at once: none of them waits
		assert _user_transaction_commits(user, ("a2", "A"))
		assert _user_transaction_commits(user, ("c1", "C"), ("b2", "B"))
		# recording and settling (still uncommitted, still holding the claim lock) do not block either
		names = [n for bundle in got for n in refs_in(bundle.messages)]
		bundles.record_delivered(
			drainer, [Published(n, 0, i) for i, n in enumerate(names)], through(got), NOW
		)
		assert bundles.settle(drainer, NOW) == 2
		assert _user_transaction_commits(user, ("a3", "A"), ("b3", "B"))
		drainer.commit()
		release_lock(drainer, lock)
	finally:
		drainer.close()
		user.close()
	assert refs(claim("d1")) == ["a2", "c1", "b2", "a3", "b3"]
	assert [state(n).status for n in names_of("a1", "b1", "a2")] == [Status.SENT, Status.SENT, Status.QUEUED]


class _InsertsDuringSettle:
	"""The sweeper's connection: right after its settle deletes a company's passed bundles
	(its transaction still open), a user commits events of that company."""

	def __init__(self, db: StandinDatabase, user: StandinDatabase):
		self.db, self.user, self.user_committed = db, user, []

	def sql(self, query, *args, **kwargs):
		result = self.db.sql(query, *args, **kwargs)
		if query.startswith(f"DELETE FROM `{BUNDLE_TABLE}`"):
			self.user_committed.append(
				_user_transaction_commits(self.user, (f"a{len(self.user_committed) + 9}", "A"))
			)
		return result

	def commit(self):
		self.db.commit()

	def rollback(self):
		self.db.rollback()


def test_the_sweepers_settle_never_blocks_the_users_inserts(site, mariadb):
	"""The sweeper runs on the scheduler's connection (REPEATABLE READ, as Frappe leaves it);
	its settle runs READ COMMITTED, so its deletes take no gap lock a user's INSERT waits on."""
	each_in_its_own_transaction(("a1", "A"), ("a2", "A"))
	got = claim("d1")
	names = [n for bundle in got for n in refs_in(bundle.messages)]
	bundles.record_delivered(frappe.db, [Published(n, 0, i) for i, n in enumerate(names)], through(got), NOW)
	bundles.release(frappe.db, "d1")
	frappe.db.commit()
	scheduler, user = _connection(mariadb, False), _connection(mariadb, False)
	try:
		watched = _InsertsDuringSettle(scheduler, user)
		result = sweeper.sweep(watched, NOW, lambda: "queued")
	finally:
		scheduler.close()
		user.close()
	assert result.ran and watched.user_committed and all(watched.user_committed)
	assert [state(n).status for n in names] == [Status.SENT, Status.SENT]


def test_control_a_naive_locking_read_of_the_bundles_does_block_an_insert(site, mariadb):
	"""Shows the check above can fail: REPEATABLE READ + a range SELECT ... FOR UPDATE takes
	next-key locks on the bundles' index, and a user's INSERT has to wait for them."""
	commit(("a1", "A"))
	drainer, user = _connection(mariadb, False), _connection(mariadb, False)
	try:
		drainer.sql(
			f"SELECT name FROM `{BUNDLE_TABLE}` WHERE company = 'A' AND name > 0 ORDER BY name LIMIT 10 FOR UPDATE"
		)
		assert not _user_transaction_commits(user, ("a2", "A"))
		drainer.rollback()
		assert _user_transaction_commits(user, ("a2", "A"))
	finally:
		drainer.close()
		user.close()


def test_a_requeue_of_dead_rows_takes_the_company_counter_lock(site, mariadb):
	"""Its bundle is drawn while no commit of the company can slip in before it."""
	commit(("a1", "A"))
	(a1,) = names_of("a1")
	frappe.db.sql(f"UPDATE `{EVENT_LOG_TABLE}` SET status = 'Dead' WHERE name = %s", (a1,))
	frappe.db.commit()
	user = _connection(mariadb, False)
	try:
		requeue(frappe.db, [a1], NOW)  # its transaction still open
		assert not _user_transaction_commits(user, ("a2", "A"))
		assert _user_transaction_commits(user, ("b1", "B"))  # other companies go on
		frappe.db.commit()
		assert _user_transaction_commits(user, ("a2", "A"))
	finally:
		user.close()


def test_claimers_are_serialized_by_the_named_lock(site, mariadb):
	first, second = _connection(mariadb, True), _connection(mariadb, True)
	try:
		lock = lock_name(first, "claim")
		assert lock == lock_name(second, "claim") and mariadb["database"] in lock
		assert get_lock(first, lock, 1)
		assert not get_lock(second, lock, 0.2)
		release_lock(first, lock)
		assert get_lock(second, lock, 0.2)
		release_lock(second, lock)
	finally:
		first.close()
		second.close()


def _indexes(mariadb, table_name: str) -> dict[str, list[str]]:
	conn = pymysql.connect(**{k: v for k, v in mariadb.items() if k != "tables"})
	try:
		with conn.cursor() as cur:
			cur.execute(f"SHOW INDEX FROM `{table_name}`")
			indexes: dict[str, list[str]] = {}
			for row in cur.fetchall():
				indexes.setdefault(row[2], []).append(row[4])
	finally:
		conn.close()
	return indexes


def test_the_tables_have_the_composite_indexes_the_queue_reads(mariadb):
	log = _indexes(mariadb, EVENT_LOG_TABLE)
	for index_name, columns in EVENT_LOG_INDEXES.items():
		assert log[index_name] == list(columns)
	assert log["lease_expires_at"] == ["lease_expires_at"]
	assert OLD_PENDING_INDEX not in log
	queue = _indexes(mariadb, BUNDLE_TABLE)
	for index_name, columns in bundles.BUNDLE_INDEXES.items():
		assert queue[index_name] == list(columns)


class RecordingDatabase:
	"""frappe.db that keeps the SELECTs it was given, with their values."""

	def __init__(self, db):
		self.db, self.selects = db, []

	def sql(self, query, values=(), **kwargs):
		if query.lstrip("( ").upper().startswith("SELECT"):
			self.selects.append((query, values))
		return self.db.sql(query, values, **kwargs)


def test_a_backlog_behind_many_delivered_bundles_is_chosen_from_the_company_index_alone(site):
	""" "This company's bundles after its cursor, in name order" must read the company index,
	not walk the primary key past every delivered bundle (benchmarks P7 on the Event Log)."""
	each_in_its_own_transaction(*[(f"old-{i}", "Acme Corp") for i in range(300)])
	deliver(claim("d1", limit=1000))
	bundles.release(frappe.db, "d1")
	each_in_its_own_transaction(*[(f"new-{i}", c) for i in range(20) for c in ("Acme Corp", "Globex Ltd")])
	frappe.db.sql(f"ANALYZE TABLE `{BUNDLE_TABLE}`")
	db = RecordingDatabase(frappe.db)
	assert len(bundles.claim(db, "d2", UNTIL, NOW, 10)) == 10
	frappe.db.commit()
	candidates = [(q, v) for q, v in db.selects if "UNION ALL" in q]
	assert candidates, db.selects
	for query, values in candidates:
		plan = frappe.db.sql(f"EXPLAIN {query}", values, as_dict=True)
		tables = [row for row in plan if row["table"] == BUNDLE_TABLE]
		assert tables and {row["key"] for row in tables} == {"company_name_index"}, plan
		# from the index alone: the rows (with their messages) are read only for those taken
		assert all("Using index" in (row["Extra"] or "") for row in tables), plan
