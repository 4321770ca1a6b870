"""Claim, lease, mark and release: the outbox SQL of the drainer, on real MariaDB.

Includes the proof that claiming never blocks the user's INSERTs (issue "Delivery",
point 4), with a control showing the naive range `SELECT ... FOR UPDATE` does block.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import frappe
import pymysql
import pytest
from delivery_support import CODEC, event
from frappe.standin import StandinDatabase

from erpnext_streaming import outbox
from erpnext_streaming.constants import Status
from erpnext_streaming.outbox import Lease, Published, Unsent

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 23, 10, 0, 0)
LEASE = timedelta(seconds=120)


def record(ref: str, company: str, status: str = Status.QUEUED) -> outbox.OutboxRecord:
	return event(
		ref,
		company,
		"erpnext.gl-entry",
		status=status,
		error="capture failed" if status == Status.DEAD else "",
	)


def commit_events(*refs: tuple[str, str]) -> list[int]:
	"""One transaction per call; returns the new rows' names in order."""
	outbox.write(frappe.db, [record(ref, company) for ref, company in refs], NOW)
	frappe.db.commit()
	return names_of(*[ref for ref, _ in refs])


def names_of(*refs: str) -> list[int]:
	rows = frappe.db.sql(
		f"SELECT name FROM `tabStreaming Event Log` WHERE reference_name IN ({', '.join(['%s'] * len(refs))}) ORDER BY name",
		refs,
	)
	return [r[0] for r in rows]


def refs(rows) -> list[str]:
	return [r["reference_name"] for r in rows]


def lease(owner: str, now: datetime = NOW) -> Lease:
	return Lease(owner, now + LEASE)


def claim(owner: str, limit: int = 100, now: datetime = NOW) -> list:
	rows = outbox.claim(frappe.db, lease(owner, now), now, limit)
	frappe.db.commit()
	return rows


def state(name: int):
	frappe.db.commit()  # a fresh snapshot
	return frappe.db.sql(
		"SELECT status, attempts, lease_owner, lease_expires_at, kafka_partition, kafka_offset, sent_at, "
		"next_attempt_at, last_error, dead_lettered_at FROM `tabStreaming Event Log` WHERE name = %s",
		(name,),
		as_dict=True,
	)[0]


def test_claim_takes_each_companys_pending_rows_in_name_order_under_one_lease_on_its_first_row(site):
	commit_events(("a1", "A"), ("b1", "B"), ("a2", "A"))
	commit_events(("x1", ""), ("a3", "A"))
	got = claim("d1")
	assert refs(got) == ["a1", "b1", "a2", "x1", "a3"]
	assert [r["name"] for r in got] == sorted(r["name"] for r in got)
	assert [r["company_sequence"] for r in got if r["company"] == "A"] == [1, 2, 3]
	leases = {
		r["reference_name"]: (state(r["name"]).lease_owner, state(r["name"]).lease_expires_at) for r in got
	}
	assert leases == {
		"a1": ("d1", NOW + LEASE), "b1": ("d1", NOW + LEASE), "x1": ("d1", NOW + LEASE),
		"a2": (None, None), "a3": (None, None),
	}  # fmt: skip
	assert outbox.lease_holders(got) == {"A": got[0]["name"], "B": got[1]["name"], "": got[3]["name"]}
	assert CODEC.reference(outbox.decode_payload(got[0]["payload"])) == "a1"
	assert claim("d2") == [] and claim("d1") == []  # rows in flight are never claimed twice


def test_a_company_is_never_leased_to_two_drainers_at_once(site):
	commit_events(("a1", "A"), ("a2", "A"))
	assert refs(claim("d1")) == ["a1", "a2"]
	commit_events(("a3", "A"), ("b1", "B"))
	assert refs(claim("d2")) == ["b1"]  # a3 waits behind d1's lease on a1, a2
	outbox.mark_sent(frappe.db, [Published(n, 0, i) for i, n in enumerate(names_of("a1", "a2", "b1"))], NOW)
	frappe.db.commit()
	assert refs(claim("d2")) == ["a3"]


def test_the_limit_keeps_each_company_a_prefix(site):
	commit_events(*[(f"{c.lower()}{i}", c) for i in range(1, 4) for c in "ABC"])
	first = claim("d1", limit=4)
	assert refs(first) == ["a1", "b1", "c1", "a2"]
	# d2 only gets companies d1 holds nothing of
	assert refs(claim("d2", limit=10)) == []
	outbox.mark_sent(frappe.db, [Published(r["name"], 0, 0) for r in first], NOW)
	frappe.db.commit()
	assert refs(claim("d2", limit=10)) == ["b2", "c2", "a3", "b3", "c3"]


def test_a_failed_row_not_yet_due_holds_back_the_later_rows_of_its_company(site):
	commit_events(("a1", "A"), ("a2", "A"), ("b1", "B"))
	a1, a2, b1 = names_of("a1", "a2", "b1")
	claim("d1")
	due = NOW + timedelta(seconds=30)
	outbox.mark_sent(frappe.db, [Published(b1, 1, 7)], NOW)
	outbox.mark_unsent(
		frappe.db, "d1", [Unsent(a1, Status.FAILED, 1, "_MSG_TIMED_OUT", next_attempt_at=due)], NOW
	)
	outbox.release_leases(frappe.db, "d1", [a2])
	frappe.db.commit()
	commit_events(("a3", "A"), ("b2", "B"))

	assert refs(claim("d1")) == ["b2"]  # A waits for a1
	later = due + timedelta(seconds=1)
	assert refs(claim("d2", now=later)) == ["a1", "a2", "a3"]  # b2 is in flight (d1's lease)


def test_an_expired_lease_is_taken_over_and_released_by_the_sweeper(site):
	commit_events(("a1", "A"), ("b1", "B"))
	a1, b1 = names_of("a1", "b1")
	claim("dead-drainer")
	after = NOW + LEASE + timedelta(seconds=1)
	assert refs(claim("d2", limit=1, now=after)) == ["a1"]  # expired: free for anyone
	assert state(a1).lease_owner == "d2"

	assert outbox.release_expired_leases(frappe.db, after) == [b1]  # d2's fresh lease stays
	frappe.db.commit()
	assert state(b1).lease_owner is None and state(a1).lease_owner == "d2"
	assert outbox.release_expired_leases(frappe.db, after) == []  # idempotent


class CountingDb:
	def __init__(self, db):
		self.db, self.statements = db, []

	def sql(self, query, values=(), as_dict=False):
		self.statements.append(query)
		return self.db.sql(query, values, as_dict=as_dict)


def test_a_batch_is_marked_sent_in_one_statement_with_partition_and_offset(site):
	commit_events(("a1", "A"), ("a2", "A"), ("b1", "B"))
	names = names_of("a1", "a2", "b1")
	claim("d1")
	counting = CountingDb(frappe.db)
	outbox.mark_sent(
		counting, [Published(n, p, o) for n, p, o in zip(names, (3, 3, 5), (10, 11, 0), strict=True)], NOW
	)
	frappe.db.commit()
	assert len(counting.statements) == 1
	got = [state(n) for n in names]
	assert [(s.status, s.kafka_partition, s.kafka_offset) for s in got] == [
		(Status.SENT, 3, 10), (Status.SENT, 3, 11), (Status.SENT, 5, 0)]  # fmt: skip
	assert all(s.lease_owner is None and s.sent_at == NOW for s in got)


def test_failures_are_recorded_in_one_statement_and_never_on_a_row_another_drainer_leases(site):
	commit_events(("a1", "A"), ("a2", "A"), ("b1", "B"))
	a1, a2, b1 = names_of("a1", "a2", "b1")
	claim("d1")
	due = NOW + timedelta(seconds=9)
	failures = [
		Unsent(a1, Status.FAILED, 1, "_MSG_TIMED_OUT: Local: Message timed out", next_attempt_at=due),
		Unsent(a2, Status.DEAD, 1, "MSG_SIZE_TOO_LARGE", dead_letter=Published(a2, 0, 4)),
		Unsent(b1, Status.DEAD, 1, "x" * 5000),
	]
	counting = CountingDb(frappe.db)
	# not the lease holder: the rows d1 leased (each company's first) stay as they are
	outbox.mark_unsent(counting, "someone-else", [failures[0], failures[2]], NOW)
	frappe.db.commit()
	assert {state(n).status for n in (a1, a2, b1)} == {Status.QUEUED}
	outbox.mark_unsent(counting, "d1", failures, NOW)
	frappe.db.commit()
	assert len(counting.statements) == 2
	s1, s2, s3 = state(a1), state(a2), state(b1)
	assert (s1.status, s1.attempts, s1.next_attempt_at, s1.lease_owner) == (Status.FAILED, 1, due, None)
	assert (s2.status, s2.dead_lettered_at, s2.kafka_partition, s2.kafka_offset) == (Status.DEAD, NOW, 0, 4)
	assert s3.status == Status.DEAD and s3.dead_lettered_at is None
	assert len(s3.last_error) == outbox.LAST_ERROR_LIMIT  # truncated

	# a Sent row is never turned back (a second drainer delivered it meanwhile)
	outbox.mark_sent(frappe.db, [Published(a1, 0, 9)], NOW)
	outbox.mark_unsent(
		frappe.db, "d1", [Unsent(a1, Status.FAILED, 2, "late report", next_attempt_at=due)], NOW
	)
	frappe.db.commit()
	assert state(a1).status == Status.SENT


def test_dead_rows_from_capture_wait_for_their_dead_letter_copy(site):
	outbox.write(frappe.db, [record("ok", "A"), record("broken", "A", Status.DEAD)], NOW)
	frappe.db.commit()
	ok, broken = names_of("ok", "broken")
	assert outbox.has_pending_work(frappe.db, NOW)
	assert refs(claim("d1")) == ["ok"]  # a Dead row is not published, and blocks nothing
	got = outbox.claim_dead_letters(frappe.db, lease("d1"), NOW, 10)
	frappe.db.commit()
	assert [r["name"] for r in got] == [broken] and got[0]["last_error"] == "capture failed"
	assert outbox.claim_dead_letters(frappe.db, lease("d2"), NOW, 10) == []  # leased
	outbox.mark_dead_lettered(frappe.db, [Published(broken, 2, 40)], NOW)
	outbox.mark_sent(frappe.db, [Published(ok, 0, 0)], NOW)
	frappe.db.commit()
	assert (state(broken).dead_lettered_at, state(broken).kafka_offset) == (NOW, 40)
	assert outbox.claim_dead_letters(frappe.db, lease("d2"), NOW, 10) == []
	assert not outbox.has_pending_work(frappe.db, NOW)


def test_pending_work_and_the_next_due_attempt(site):
	assert not outbox.has_pending_work(frappe.db, NOW) and outbox.next_attempt_due(frappe.db) is None
	(a1,) = commit_events(("a1", "A"))
	assert outbox.has_pending_work(frappe.db, NOW)
	claim("d1")
	due = NOW + timedelta(minutes=5)
	outbox.mark_unsent(frappe.db, "d1", [Unsent(a1, Status.FAILED, 1, "timeout", next_attempt_at=due)], NOW)
	frappe.db.commit()
	assert not outbox.has_pending_work(frappe.db, NOW)  # Failed, not yet due
	commit_events(("a2", "A"))
	assert not outbox.has_pending_work(frappe.db, NOW), "a2 waits behind a1: no drainer needed yet"
	commit_events(("b1", "B"))
	assert outbox.has_pending_work(frappe.db, NOW)
	assert outbox.has_pending_work(frappe.db, due)
	assert outbox.next_attempt_due(frappe.db) == due
	claim("d1")
	assert not outbox.has_pending_work(frappe.db, NOW), "b1 is in flight"


# -- locks ----------------------------------------------------------------------------


def _connection(mariadb, read_committed: bool) -> StandinDatabase:
	db = StandinDatabase(**{k: v for k, v in mariadb.items() if k != "tables"})
	db.sql("SET SESSION innodb_lock_wait_timeout = 1")
	if read_committed:
		outbox.use_read_committed(db)
	db.commit()
	return db


def _user_transaction_commits(user: StandinDatabase, *refs: tuple[str, str]) -> bool:
	"""A user's transaction writing events; False if it had to wait for a lock (1205)."""
	try:
		outbox.write(user, [record(ref, company) for ref, company in refs], NOW)
		user.commit()
		return True
	except pymysql.err.OperationalError as e:
		assert e.args[0] == 1205, e
		user.rollback()
		return False


def test_a_claim_in_progress_never_blocks_the_users_inserts(site, mariadb):
	commit_events(("a1", "A"), ("b1", "B"))
	drainer, user = _connection(mariadb, True), _connection(mariadb, False)
	try:
		lock = outbox.lock_name(drainer, "claim")
		assert outbox.get_lock(drainer, lock, 1)
		got = outbox.claim(drainer, lease("d1"), NOW, 100)  # transaction open: row locks held
		assert refs(got) == ["a1", "b1"]
		# same companies, a new company, and both at once: none of them waits
		assert _user_transaction_commits(user, ("a2", "A"))
		assert _user_transaction_commits(user, ("c1", "C"), ("b2", "B"))
		# marking (still uncommitted, still holding the claim lock) does not block either
		outbox.mark_sent(drainer, [Published(r["name"], 0, i) for i, r in enumerate(got)], NOW)
		assert _user_transaction_commits(user, ("a3", "A"), ("b3", "B"))
		drainer.commit()
		outbox.release_lock(drainer, lock)
	finally:
		drainer.close()
		user.close()
	frappe.db.commit()
	assert refs(claim("d1")) == ["a2", "c1", "b2", "a3", "b3"]


def test_control_the_naive_range_lock_does_block_an_insert(site, mariadb):
	"""Shows the check above can fail: REPEATABLE READ + range SELECT ... FOR UPDATE takes
	next-key locks on the status index, and a user's INSERT has to wait for them."""
	commit_events(("a1", "A"))
	drainer, user = _connection(mariadb, False), _connection(mariadb, False)
	try:
		drainer.sql(
			"SELECT name FROM `tabStreaming Event Log` WHERE status = 'Queued' ORDER BY name LIMIT 10 FOR UPDATE"
		)
		assert not _user_transaction_commits(user, ("a2", "A"))
		drainer.rollback()
		assert _user_transaction_commits(user, ("a2", "A"))
	finally:
		drainer.close()
		user.close()


def test_claimers_are_serialized_by_the_named_lock(site, mariadb):
	first, second = _connection(mariadb, True), _connection(mariadb, True)
	try:
		lock = outbox.lock_name(first, "claim")
		assert lock == outbox.lock_name(second, "claim") and mariadb["database"] in lock
		assert outbox.get_lock(first, lock, 1)
		assert not outbox.get_lock(second, lock, 0.2)
		outbox.release_lock(first, lock)
		assert outbox.get_lock(second, lock, 0.2)
		outbox.release_lock(second, lock)
	finally:
		first.close()
		second.close()


def test_the_event_log_has_the_composite_indexes_the_claim_uses(mariadb):
	conn = pymysql.connect(**{k: v for k, v in mariadb.items() if k != "tables"})
	with conn.cursor() as cur:
		cur.execute("SHOW INDEX FROM `tabStreaming Event Log`")
		indexes: dict[str, list[str]] = {}
		for row in cur.fetchall():
			indexes.setdefault(row[2], []).append(row[4])
	conn.close()
	for index_name, columns in outbox.EVENT_LOG_INDEXES.items():
		assert indexes[index_name] == list(columns)
	assert indexes["lease_expires_at"] == ["lease_expires_at"]


class RecordingDatabase:
	"""frappe.db that keeps the SELECTs it was given, with their values."""

	def __init__(self, db):
		self.db, self.selects = db, []

	def sql(self, query, values=(), **kwargs):
		if query.lstrip("( ").upper().startswith("SELECT"):
			self.selects.append((query, values))
		return self.db.sql(query, values, **kwargs)


def test_a_backlog_behind_many_sent_rows_is_found_through_the_pending_index(site):
	"""The MariaDB optimizer walked the primary key for "this company's pending rows in name
	order" once Sent rows piled up in front of a backlog (2.6 s per claim at 1,000,000 rows,
	benchmarks P7); every claim query must read the pending index instead."""
	names = commit_events(*[(f"old-{i}", "Acme Corp") for i in range(3000)])
	frappe.db.sql(
		"UPDATE `tabStreaming Event Log` SET `status` = %s WHERE `name` <= %s", (Status.SENT, names[-1])
	)
	frappe.db.sql("ANALYZE TABLE `tabStreaming Event Log`")
	commit_events(*[(f"new-{i}", company) for i in range(40) for company in ("Acme Corp", "Globex Ltd")])
	db = RecordingDatabase(frappe.db)

	assert len(outbox.claimable(db, NOW, 50)) == 50
	candidates = [(q, v) for q, v in db.selects if "UNION ALL" in q or "ORDER BY `name` LIMIT" in q]
	assert candidates, db.selects
	for query, values in candidates:
		plan = frappe.db.sql(f"EXPLAIN {query}", values, as_dict=True)
		tables = [row for row in plan if row["table"] == "tabStreaming Event Log"]
		assert tables and {row["key"] for row in tables} == {outbox.PENDING_INDEX}, plan


# -- the claim's single read ----------------------------------------------------------------


def stored(names: list[int]) -> list[dict]:
	frappe.db.commit()  # a fresh snapshot (the drainer's session reads committed rows)
	return frappe.db.sql(
		f"SELECT {', '.join(f'`{c}`' for c in outbox.DELIVERY_COLUMNS)} FROM `tabStreaming Event Log` "
		f"WHERE name IN ({', '.join(['%s'] * len(names))}) ORDER BY name",
		names,
		as_dict=True,
	)


def test_claimed_rows_carry_every_delivery_column_as_stored(site):
	commit_events(("a1", "A"), ("x1", ""), ("e1", "E"))
	a1, x1, e1 = names_of("a1", "x1", "e1")
	frappe.db.sql(
		"UPDATE `tabStreaming Event Log` SET status = 'Failed', attempts = 2, last_error = %s, "
		"event_time = NULL, message_key = NULL, company_sequence = NULL WHERE name = %s",
		("first line\x1fsecond\x1f part, ünïcode", x1),
	)
	frappe.db.sql(
		"UPDATE `tabStreaming Event Log` SET reference_name = '', topic = '' WHERE name = %s", (e1,)
	)
	frappe.db.commit()  # the setup is committed, as a user's transaction would be
	got, read_back = recorded_claim()
	assert [r["name"] for r in got] == [a1, x1, e1] and not read_back  # one read, unpacked
	assert got == stored([a1, x1, e1])  # NULL stays None, "" stays "", every type as PyMySQL gives it


def recorded_claim() -> tuple[list, bool]:
	"""d1's claim, and whether it read the leased rows back column by column."""
	queries = []

	class Recording:
		def sql(self, query, values=(), as_dict=False):
			queries.append(query)
			return frappe.db.sql(query, values, as_dict=as_dict)

	got = outbox.claim(Recording(), lease("d1"), NOW, 100)
	frappe.db.commit()  # the setup is committed, as a user's transaction would be
	return got, any(q.startswith(outbox._SELECT_DELIVERY) for q in queries)


def test_a_row_that_does_not_unpack_is_read_column_by_column(site):
	"""A field holding the packing separator (here a company name) cannot shift the others:
	the batch is read back as stored."""
	commit_events(("a1", "Odd\x1fCompany"), ("b1", "B"))
	got, read_back = recorded_claim()
	assert read_back and got == stored(names_of("a1", "b1"))
	assert got[0]["company"] == got[0]["message_key"] == "Odd\x1fCompany"


class RacingDatabase:
	"""frappe.db, with `before_lease` run (on another connection) just before the lease UPDATE:
	what a requeue or a claimer without the lock can do between the claim's read and its lease."""

	def __init__(self, before_lease):
		self.before_lease = before_lease

	def sql(self, query, values=(), as_dict=False):
		if query.startswith("UPDATE") and "SET `lease_owner` = %s, `lease_expires_at`" in query:
			self.before_lease()
		return frappe.db.sql(query, values, as_dict=as_dict)


def claim_while(mariadb, meanwhile) -> list:
	"""d1's claim, with `meanwhile(other connection)` committed between its read and its lease;
	d1 reads as a drainer does (READ COMMITTED)."""
	other = _connection(mariadb, True)
	outbox.use_read_committed(frappe.db)
	frappe.db.commit()  # the isolation level applies from the next transaction (as `Drainer.prepare`)

	def before_lease():
		meanwhile(other)
		other.commit()

	try:
		return outbox.claim(RacingDatabase(before_lease), lease("d1"), NOW, 10)
	finally:
		other.close()
		frappe.db.commit()  # the claim's transaction ends, as the drainer commits it
		frappe.db.sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")


def test_a_failed_row_requeued_between_the_read_and_the_lease_is_claimed_as_requeued(site, mariadb):
	commit_events(("a1", "A"), ("a2", "A"))
	a1, _ = names_of("a1", "a2")
	frappe.db.sql(
		"UPDATE `tabStreaming Event Log` SET status = 'Failed', attempts = 3 WHERE name = %s", (a1,)
	)
	frappe.db.commit()  # the setup is committed, as a user's transaction would be
	got = claim_while(mariadb, lambda other: outbox.requeue(other, [a1], NOW))
	assert [(r["reference_name"], r["status"], r["attempts"]) for r in got] == [
		("a1", Status.QUEUED, 0),
		("a2", Status.QUEUED, 0),
	]


def test_a_company_leased_by_someone_else_meanwhile_is_left_to_them(site, mariadb):
	commit_events(("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"))
	a1, a2, a3, b1 = names_of("a1", "a2", "a3", "b1")
	got = claim_while(
		mariadb,
		lambda other: other.sql(
			"UPDATE `tabStreaming Event Log` SET lease_owner = 'intruder', lease_expires_at = %s WHERE name = %s",
			(NOW + LEASE, a1),
		),
	)
	assert refs(got) == ["b1"]  # the intruder holds A's first row, so A is theirs
	assert [state(n).lease_owner for n in (a1, a2, a3, b1)] == ["intruder", None, None, "d1"]


def test_a_row_changed_meanwhile_cuts_its_company_there(site, mariadb):
	commit_events(("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"))
	a1, a2, a3, b1 = names_of("a1", "a2", "a3", "b1")
	got = claim_while(
		mariadb,
		lambda other: (
			other.sql(
				"UPDATE `tabStreaming Event Log` SET lease_owner = 'intruder', lease_expires_at = %s "
				"WHERE name = %s",
				(NOW + LEASE, b1),
			),
			outbox.mark_sent(other, [Published(a2, 0, 7)], NOW),
		),
	)
	# B's lease failed, so d1 reads its chosen rows back: a2 is no longer pending, A is cut there
	assert refs(got) == ["a1"]
	assert [state(n).lease_owner for n in (a1, a3, b1)] == ["d1", None, "intruder"]


def test_a_claimer_continues_a_company_after_its_own_rows_in_flight(site):
	commit_events(("a1", "A"), ("b1", "B"), ("a2", "A"), ("b2", "B"), ("a3", "A"))
	first = claim("d1", limit=2)
	assert refs(first) == ["a1", "b1"]
	assert refs(claim("d2")) == []  # both companies are in flight
	in_flight = {r["company"]: r["name"] for r in first}
	rows = outbox.claim(frappe.db, lease("d1"), NOW, 100, after=in_flight)
	frappe.db.commit()  # the claim's transaction ends, as the drainer commits it
	assert refs(rows) == ["a2", "b2", "a3"]
	assert [state(r["name"]).lease_owner for r in rows] == ["d1", "d1", None]  # each company's first


def test_a_row_marked_by_its_expired_lease_holder_between_the_read_and_the_lease_is_claimed_as_marked(
	site, mariadb
):
	commit_events(("a1", "A"))
	(a1,) = names_of("a1")
	frappe.db.sql(
		"UPDATE `tabStreaming Event Log` SET lease_owner = 'old', lease_expires_at = %s WHERE name = %s",
		(NOW - timedelta(seconds=1), a1),
	)
	frappe.db.commit()  # the setup is committed, as a user's transaction would be
	got = claim_while(
		mariadb,
		lambda other: outbox.mark_unsent(
			other, "old", [Unsent(a1, Status.FAILED, 3, "late report", next_attempt_at=NOW)], NOW
		),
	)
	assert [(r["status"], r["attempts"]) for r in got] == [(Status.FAILED, 3)]


def test_a_drainer_knows_which_companies_it_still_leases(site):
	commit_events(("a1", "A"), ("a2", "A"), ("b1", "B"))
	a1, _, b1 = names_of("a1", "a2", "b1")
	got = claim("d1")
	leases = outbox.lease_holders(got)
	assert leases == {"A": a1, "B": b1}
	assert outbox.still_leased(frappe.db, "d1", leases) == {"A", "B"}
	frappe.db.sql("UPDATE `tabStreaming Event Log` SET lease_owner = 'd2' WHERE name = %s", (b1,))
	assert outbox.still_leased(frappe.db, "d1", leases) == {"A"}  # B was taken over
	assert outbox.still_leased(frappe.db, "d1", {}) == set()
	frappe.db.rollback()
