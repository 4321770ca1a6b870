"""The transactional outbox write: a fixed number of statements per transaction (one
multi-row INSERT of all its events, one of their delivery bundles), gapless per-company
order, all or nothing."""

from __future__ import annotations

from datetime import datetime

import frappe
import pymysql
import pytest
from frappe.standin import StandinDatabase

from erpnext_streaming.delivery import messages
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.outbox.mariadb import statement_budget
from erpnext_streaming.outbox.records import MessageContext, OutboxRecord, decode_payload
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration


def record(name: str, company: str) -> OutboxRecord:
	return OutboxRecord(
		event_id=f"id-{name}", event_type="posted", reference_doctype="GL Entry", reference_name=name,
		company=company, event_time=datetime(2026, 11, 23, 9, 30), topic="erpnext.gl-entry",
		message_key=company, schema_name="io.erpnext.streaming.GLEntry", schema_version=1,
		schema_fingerprint="ab", payload=bytes([0, 1, 2, 255]),
	)  # fmt: skip


def rows():
	return frappe.db.sql(
		"SELECT name, company, company_sequence, reference_name, status, payload FROM `tabStreaming Event Log` ORDER BY name",
		as_dict=True,
	)


def test_a_transaction_writes_its_events_in_buffer_order_with_per_company_sequences(site):
	now = datetime(2026, 11, 23, 10, 0)
	write(frappe.db, [record("a1", "A"), record("b1", "B"), record("a2", "A"), record("x1", "")], now)
	frappe.db.commit()
	write(frappe.db, [record("a3", "A"), record("b2", "B")], now)
	frappe.db.commit()

	got = rows()
	assert [r.reference_name for r in got] == ["a1", "b1", "a2", "x1", "a3", "b2"]
	assert [r.name for r in got] == sorted(r.name for r in got)
	assert [(r.company, r.company_sequence) for r in got] == [
		("A", 1), ("B", 1), ("A", 2), ("", 1), ("A", 3), ("B", 2)]  # fmt: skip
	assert all(r.status == "Queued" for r in got)
	assert decode_payload(got[0].payload) == bytes([0, 1, 2, 255])


def test_rollback_leaves_no_rows_and_no_sequence_numbers_used(site):
	now = datetime(2026, 11, 23, 10, 0)
	write(frappe.db, [record("a1", "A")], now)
	frappe.db.rollback()
	write(frappe.db, [record("a2", "A")], now)
	frappe.db.commit()
	assert [(r.reference_name, r.company_sequence) for r in rows()] == [("a2", 1)]


def _two_connections(mariadb):
	params = {k: v for k, v in mariadb.items() if k != "tables"}
	t1, t2 = StandinDatabase(**params), StandinDatabase(**params)
	t2.sql("SET SESSION innodb_lock_wait_timeout = 1")
	return t1, t2


def test_a_second_transaction_of_the_same_company_waits_for_the_first_to_commit(site, mariadb):
	"""T1 writes first and commits late; T2 cannot take a number until then, so for every
	company, sequence order = name order = commit order."""
	now = datetime(2026, 11, 23, 10, 0)
	t1, t2 = _two_connections(mariadb)
	try:
		write(t1, [record("t1", "A")], now)  # holds company A's counter row
		with pytest.raises(pymysql.err.OperationalError) as blocked:
			write(t2, [record("t2", "A")], now)
		assert blocked.value.args[0] == 1205  # lock wait timeout: T2 had to wait for T1
		t2.rollback()
		t1.commit()
		write(t2, [record("t2", "A")], now)
		t2.commit()
	finally:
		t1.close()
		t2.close()
	frappe.db.commit()  # a fresh snapshot for this connection
	got = rows()
	assert [(r.reference_name, r.company_sequence) for r in got] == [("t1", 1), ("t2", 2)]
	assert got[0].name < got[1].name


def test_transactions_of_other_companies_do_not_wait(site, mariadb):
	now = datetime(2026, 11, 23, 10, 0)
	t1, t2 = _two_connections(mariadb)
	try:
		write(t1, [record("a", "A")], now)
		write(t2, [record("b", "B")], now)  # would raise 1205 if it had to wait
		t2.commit()
		t1.commit()
	finally:
		t1.close()
		t2.close()
	frappe.db.commit()
	assert sorted((r.company, r.company_sequence) for r in rows()) == [("A", 1), ("B", 1)]


def bundles():
	return frappe.db.sql(
		"SELECT name, company, events, messages FROM `tabStreaming Delivery Bundle` ORDER BY name",
		as_dict=True,
	)


def test_a_failed_insert_gives_its_sequence_numbers_back_and_leaves_no_bundle(site):
	now = datetime(2026, 11, 23, 10, 0)
	write(frappe.db, [record("a1", "A")], now)
	frappe.db.commit()
	broken = record("a2", "A")
	broken.event_type = "x" * 200  # longer than varchar(140): MariaDB refuses the row (strict mode)
	with pytest.raises(pymysql.err.DataError):
		write(frappe.db, [broken], now)
	write(frappe.db, [record("a3", "A")], now)  # the same transaction goes on
	frappe.db.commit()
	assert [(r.reference_name, r.company_sequence) for r in rows()] == [("a1", 1), ("a3", 2)]
	assert [refs_in(b.messages) for b in bundles()] == [[r.name] for r in rows()]


class CountingDatabase:
	"""frappe.db that counts the statements sent to MariaDB."""

	def __init__(self, db):
		self.db, self.statements = db, []
		# the statement budget is read once per connection (@@max_allowed_packet); this
		# connection has read it already
		self._erpnext_streaming_statement_budget = statement_budget(db)

	def sql(self, query, *args, **kwargs):
		self.statements.append(query.split(None, 1)[0].upper())
		return self.db.sql(query, *args, **kwargs)


@pytest.mark.parametrize("events", [1, 60])
def test_a_transaction_costs_six_statements_whatever_its_size(site, events):
	"""Savepoint, counter upsert, counter read, the names, ONE multi-row INSERT of rows and
	ONE of bundles: round trips do not grow with the number of events (or of companies) in
	the transaction, until its statements would pass half of max_allowed_packet
	(tests/test_outbox_size.py)."""
	db = CountingDatabase(frappe.db)
	companies = ("A", "B", "C")
	write(db, [record(f"r{i}", companies[i % 3]) for i in range(events)], datetime(2026, 11, 23, 10))
	frappe.db.commit()  # the user's transaction ends (nothing more is sent for the outbox)
	assert db.statements == ["SAVEPOINT", "INSERT", "SELECT", "SELECT", "INSERT", "INSERT"]
	assert len(rows()) == events
	assert sum(b.events for b in bundles()) == events


def test_companies_the_database_holds_as_one_name_share_one_gapless_sequence(site):
	"""MariaDB's collation holds "Acme", "ACME" and "Acme " as one counter row (case and
	trailing spaces do not count): their events share its numbers, none is lost or repeated."""
	now = datetime(2026, 11, 23, 10, 0)
	write(frappe.db, [record("a1", "Acme"), record("a2", "ACME "), record("a3", "Acme")], now)
	frappe.db.commit()  # the user's transaction commits
	write(frappe.db, [record("a4", "acme")], now)
	frappe.db.commit()  # the user's transaction commits
	got = rows()
	assert [(r.reference_name, r.company, r.company_sequence) for r in got] == [
		("a1", "Acme", 1), ("a2", "ACME ", 2), ("a3", "Acme", 3), ("a4", "acme", 4)]  # fmt: skip


def test_a_transaction_writes_one_bundle_per_company_with_its_events_in_sequence_order(site):
	"""The delivery queue: per company, one bundle holding that company's events of the
	transaction as ready messages (topic, key, value, headers), in sequence order; a Dead
	capture failure has no bundle entry."""
	now = datetime(2026, 11, 23, 10, 0)
	dead = record("x1", "A")
	dead.status, dead.payload, dead.last_error = "Dead", b"", "capture failed"
	write(
		frappe.db,
		[record("a1", "A"), record("b1", "B"), dead, record("a2", "A")],
		now,
		context=MessageContext("site.test"),
	)
	frappe.db.commit()
	by_ref = {r.reference_name: r for r in rows()}
	got = {}
	for b in bundles():
		ready: list = []
		assert messages.read(b.messages, None, ready, {}) == [m.ref for m in ready]
		got[b.company] = ready
	assert sorted(got) == ["A", "B"]
	assert [m.ref for m in got["A"]] == [by_ref["a1"].name, by_ref["a2"].name]
	first = got["A"][0]
	assert (first.topic, first.key, first.value) == (
		"erpnext.gl-entry", "A", decode_payload(by_ref["a1"].payload))  # fmt: skip
	headers = dict(first.headers)
	assert headers["ce_source"] == "site.test"
	assert headers["es_company_sequence"] == "1"
	assert list(headers) == [
		"ce_id", "ce_type", "ce_source", "ce_subject", "ce_time", "ce_specversion", "content-type",
		"schema_name", "schema_version", "schema_fingerprint", "es_company_sequence"]  # fmt: skip


def test_a_bundles_values_come_back_from_mariadb_byte_for_byte_whatever_their_bytes(site):
	"""The values line stores one character per byte in a Long Text (utf8mb4) column:
	every byte value, NUL, newlines, quotes and backslashes included, survives the INSERT
	and the read back."""
	every = record("a1", "A")
	every.payload = bytes(range(256)) + b"'\"\\\n\x00"
	write(frappe.db, [every, record("a2", "A")], datetime(2026, 11, 23, 10, 0),
		context=MessageContext("site.test"))  # fmt: skip
	(stored,) = bundles()
	ready: list = []
	assert len(messages.read(stored.messages, None, ready, {})) == 2
	assert [m.value for m in ready] == [every.payload, bytes([0, 1, 2, 255])]


def test_the_statement_budget_is_read_once_per_connection(site):
	db = CountingDatabase(frappe.db)
	del db._erpnext_streaming_statement_budget
	first = statement_budget(db)
	assert statement_budget(db) == first and db.statements == ["SELECT"]
	(packet,) = frappe.db.sql("SELECT @@max_allowed_packet")[0]
	assert first == max(int(packet) // 2, 64 * 1024)
