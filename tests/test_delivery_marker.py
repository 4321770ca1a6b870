"""The marker: delivered batches recorded (one receipt, the cursors moved) on a second
connection, in a thread, while the drainer claims and produces the next batch
(delivery/marker.py); on real MariaDB and, for the drainer, a real broker."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta

import frappe
import pytest
from delivery_support import (
	COMPANIES,
	by_event_id,
	commit_transaction,
	consume,
	cursor_leases,
	cursors,
	event,
	new_topic,
	rows,
)
from test_delivery_drainer import make_drainer, producer_conf

from erpnext_streaming.constants import BUNDLE_TABLE, CURSOR_TABLE, RECEIPT_TABLE, Status
from erpnext_streaming.delivery import bundles
from erpnext_streaming.delivery.connection import Connection
from erpnext_streaming.delivery.marker import Marker
from erpnext_streaming.delivery.messages import refs as refs_in
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.outbox.mariadb import use_read_committed
from erpnext_streaming.outbox.records import Published

NOW = datetime(2026, 11, 23, 10, 0, 0)


def second_connection() -> Connection:
	"""What delivery/jobs.py `second_connection` makes, on the stand-in's database."""
	return Connection(frappe.db.create_connection())


def claimed(limit: int = 100, after: dict | None = None) -> list[bundles.Claimed]:
	batch = bundles.claim(frappe.db, "d1", NOW + timedelta(minutes=5), NOW, limit, after)
	frappe.db.commit()  # the claim's transaction ends, as the drainer commits it
	return batch


def events_of(batch: list[bundles.Claimed]) -> list[int]:
	"""The Event Log names in the bundles, in order."""
	return [n for b in batch for n in refs_in(b.messages)]


def through_of(batch: list[bundles.Claimed]) -> dict[str, int]:
	"""{cursor: the last of its bundles in `batch`}, as the drainer hands it to the marker."""
	return {b.cursor: b.name for b in batch}


def receipts() -> list:
	frappe.db.commit()
	return frappe.db.sql(f"SELECT name, events, positions FROM `{RECEIPT_TABLE}` ORDER BY name", as_dict=True)


def test_a_delivered_batch_is_one_receipt_and_moved_cursors_written_on_the_markers_own_connection(site):
	topic = "erpnext.marker"
	commit_transaction([event(f"m{i}", COMPANIES[i % 3], topic) for i in range(6)])
	batch = claimed()
	assert len(batch) == 3  # one bundle per company of the transaction
	frappe.db.sql(  # Acme's next bundle had failed before
		f"UPDATE `{CURSOR_TABLE}` SET attempts = 2, next_attempt_at = %s, last_error = 'timed out' WHERE name = %s",
		(NOW, COMPANIES[0]),
	)
	frappe.db.commit()
	sent = [Published(name, 2, 100 + i) for i, name in enumerate(events_of(batch))]
	marker = Marker(second_connection())
	try:
		marker.prepare()
		marker.submit(sent, through_of(batch), NOW)
		marker.wait()
	finally:
		marker.close()
	(receipt,) = receipts()
	assert receipt.events == 6
	assert sorted(map(tuple, json.loads(receipt.positions))) == sorted((p.name, 2, p.offset) for p in sent)
	assert {
		c: (r["delivered_through"], r["attempts"], r["next_attempt_at"], r["last_error"], r["lease_owner"])
		for c, r in cursors().items()
	} == {b.cursor: (b.name, 0, None, "", "d1") for b in batch}  # moved, retry state cleared, still leased
	assert {r.status for r in rows()} == {Status.QUEUED}  # until the receipt is settled

	assert bundles.settle(frappe.db, NOW) == 6
	frappe.db.commit()
	by_name = {r.name: r for r in rows()}
	assert [
		(by_name[p.name].status, by_name[p.name].kafka_partition, by_name[p.name].kafka_offset) for p in sent
	] == [(Status.SENT, 2, p.offset) for p in sent]
	assert not receipts() and not frappe.db.sql(f"SELECT 1 FROM `{BUNDLE_TABLE}`")


def test_a_record_runs_while_the_drainers_connection_claims_the_next_batch(site):
	"""The marker's record and the drainer's claim of the next batch wait for no lock of each
	other: the claim completes while the marker's transaction is still open. (A claim that
	continues a company being recorded writes that company's cursor too, so it waits for the
	record's commit; here batch 2 is another company's.)"""
	topic = "erpnext.marker"
	commit_transaction([event(f"a{i}", COMPANIES[0], topic) for i in range(3)])
	first = claimed()
	commit_transaction([event(f"b{i}", COMPANIES[1], topic) for i in range(3)])
	entered, release = threading.Event(), threading.Event()

	class Holding(Connection):
		hold = False

		def commit(self) -> None:
			if self.hold:
				entered.set()  # the record is written; its transaction stays open until released
				release.wait(10)
			super().commit()

	marker = Marker(Holding(frappe.db.create_connection()))
	try:
		marker.prepare()  # READ COMMITTED, as in the drainer
		marker.db.hold = True
		marker.submit([Published(n, 0, i) for i, n in enumerate(events_of(first))], through_of(first), NOW)
		assert entered.wait(10)
		use_read_committed(frappe.db)
		frappe.db.commit()  # the isolation level applies from the next transaction (as `Drainer.prepare`)
		second = claimed(after=through_of(first))  # the drainer continues after what it started
		assert [b.cursor for b in second] == [COMPANIES[1]]
		assert len(events_of(second)) == 3
		assert not receipts()  # the record is not committed yet
		release.set()
		marker.wait()
	finally:
		release.set()
		marker.close()
		frappe.db.sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
	assert cursors()[COMPANIES[0]]["delivered_through"] == first[0].name
	assert [r.events for r in receipts()] == [3]


class FailingConnection(Connection):
	"""Fails when the record moves the cursors (after the receipt was inserted)."""

	def sql(self, query, values=(), as_dict=False):
		if CURSOR_TABLE in query:
			raise RuntimeError("the marker's connection is gone")
		return super().sql(query, values, as_dict)


def test_a_failed_record_is_raised_in_the_drainers_thread_once_and_records_nothing(site):
	"""Receipt and cursor move are one transaction: when the record fails, neither is kept,
	so the bundle is delivered again (at least once) and its events never show Sent."""
	topic = "erpnext.marker"
	commit_transaction([event("f1", COMPANIES[0], topic)])
	batch = claimed()
	marker = Marker(FailingConnection(frappe.db.create_connection()))
	try:
		marker.submit([Published(events_of(batch)[0], 0, 1)], through_of(batch), NOW)
		with pytest.raises(RuntimeError, match="connection is gone"):
			marker.wait()
		marker.wait()  # raised once: the drainer handles it once
	finally:
		marker.close()
	assert not receipts()
	cursor = cursors()[COMPANIES[0]]
	assert (cursor["delivered_through"], cursor["lease_owner"]) == (0, "d1")
	assert bundles.deliverable(frappe.db, NOW + timedelta(minutes=10))  # again, once the lease is gone
	(row,) = rows()
	assert row.status == Status.QUEUED


def test_a_record_rolled_back_as_a_deadlock_victim_is_written_again(site):
	"""The drainer's claim writes the leases of the cursors the marker is moving, in its own
	order: when MariaDB rolls the record back as the deadlock's victim, the marker writes it
	again (one receipt) instead of failing the drainer, whose batch would be sent again."""
	topic = "erpnext.marker"
	commit_transaction([event("d1", COMPANIES[0], topic), event("d2", COMPANIES[1], topic)])
	batch = claimed()
	frappe.db.sql(  # more cursors for the claimer to write first: the heavier transaction wins
		f"INSERT INTO `{CURSOR_TABLE}` (name, creation, modified, modified_by, owner, docstatus, idx, company, "
		"delivered_through, attempts) VALUES " + ", ".join(["(%s, %s, %s, 'x', 'x', 0, 0, %s, 0, 0)"] * 10),
		[v for i in range(10) for v in (f"other {i}", NOW, NOW, f"other {i}")],
	)
	frappe.db.commit()
	acme, globex = COMPANIES[0], COMPANIES[1]
	claimer = second_connection()  # the drainer's connection, claiming the next batch
	moves: list[str] = []

	class Counting(Connection):
		def sql(self, query, values=(), as_dict=False):
			if query.startswith(f"INSERT INTO `{CURSOR_TABLE}`"):
				moves.append(query)
			return super().sql(query, values, as_dict)

	marker = Marker(Counting(frappe.db.create_connection()))
	try:
		marker.prepare()
		lease = "UPDATE `tabStreaming Delivery Cursor` SET lease_expires_at = %s WHERE name = %s"
		for name in [globex, *(f"other {i}" for i in range(10))]:
			claimer.sql(lease, (NOW + timedelta(minutes=9), name))
		marker.submit([Published(n, 0, i) for i, n in enumerate(events_of(batch))], through_of(batch), NOW)
		waits = "SELECT COUNT(*) FROM information_schema.INNODB_LOCK_WAITS"
		deadline = time.monotonic() + 10
		while (
			not frappe.db.sql(waits)[0][0] and time.monotonic() < deadline
		):  # Acme written, waits for Globex
			time.sleep(0.2)  # InnoDB refreshes these tables at most every 0.1 s of not being read
		assert frappe.db.sql(waits)[0][0], "the record waits for the claimer's lock"
		claimer.sql(lease, (NOW + timedelta(minutes=9), acme))  # the deadlock: the record is rolled back
		claimer.commit()
		marker.wait()  # written again, no error
	finally:
		claimer.close()
		marker.close()
	assert len(moves) == 2  # the record was rolled back and written again
	assert [r.events for r in receipts()] == [2]
	assert {c: r["delivered_through"] for c, r in cursors().items() if c in (acme, globex)} == through_of(
		batch
	)


def test_records_commit_in_batch_order(site):
	"""`submit` waits for the previous record, so batch n is committed before batch n+1."""
	topic = "erpnext.marker"
	for i in range(4):
		commit_transaction([event(f"o{i}", COMPANIES[0], topic)])  # a bundle each
	batch = claimed()
	assert len(batch) == 4
	order: list[int] = []

	class Recording(Connection):
		def commit(self) -> None:
			super().commit()
			order.append(len(order))

	marker = Marker(Recording(frappe.db.create_connection()))
	try:
		for i, bundle in enumerate(batch):
			marker.submit([Published(events_of([bundle])[0], 0, i)], through_of([bundle]), NOW)
			assert len(order) == i  # the previous record is committed before the next is handed over
	finally:
		marker.close()
	assert order == [0, 1, 2, 3]
	assert cursors()[COMPANIES[0]]["delivered_through"] == batch[-1].name
	assert [r.events for r in receipts()] == [1, 1, 1, 1]


@pytest.mark.integration
def test_a_drainer_with_a_marker_delivers_a_backlog_in_order_and_settles_every_event(
	site, mariadb, redis_url, kafka_bootstrap
):
	topic = new_topic(kafka_bootstrap)
	records = [event(f"e{i}", COMPANIES[i % 3], topic) for i in range(60)]
	for start in range(0, 60, 20):
		commit_transaction(records[start : start + 20])
	conf = producer_conf(kafka_bootstrap)
	drainer = make_drainer(mariadb, redis_url, lambda: KafkaProducer(conf), batch_size=7)
	drainer.marker = Marker(Connection(frappe.db.create_connection()))
	try:
		stats = drainer.run()
	finally:
		drainer.marker.close()
		drainer.db.close()
	assert stats.sent == 60 and stats.batches >= 9
	log = rows()
	assert {(r.status, r.lease_owner) for r in log} == {(Status.SENT, None)}
	assert not receipts() and not frappe.db.sql(f"SELECT 1 FROM `{BUNDLE_TABLE}`")  # settled before it left
	assert cursor_leases() == {}  # given back when it left
	got = consume(kafka_bootstrap, topic, expect=60)
	assert all(len(copies) == 1 for copies in by_event_id(got).values()) and len(got) == 60
	where = {(m.partition, m.offset): m.headers["ce_id"] for m in got}
	assert all(where[(r.kafka_partition, r.kafka_offset)] == r.event_id for r in log)
	for company in COMPANIES:  # each company's events in its sequence order, in one partition
		mine = sorted((m for m in got if m.key == company.encode()), key=lambda m: m.offset)
		assert [int(m.headers["es_company_sequence"]) for m in mine] == list(range(1, 21))
