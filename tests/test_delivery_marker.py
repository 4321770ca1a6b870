"""The marker: delivered batches marked Sent on a second connection, in a thread, while the
drainer claims and produces the next batch (delivery/marker.py); on real MariaDB and, for
the drainer, a real broker."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import frappe
import pytest
from delivery_support import COMPANIES, by_event_id, commit_transaction, consume, event, new_topic, rows
from frappe.standin import StandinDatabase
from test_delivery_drainer import make_drainer, producer_conf

from erpnext_streaming import outbox
from erpnext_streaming.constants import Status
from erpnext_streaming.delivery.connection import Connection
from erpnext_streaming.delivery.marker import Marker
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.outbox import Lease, Published

NOW = datetime(2026, 11, 23, 10, 0, 0)


def second_connection() -> Connection:
	"""What delivery/jobs.py `second_connection` makes, on the stand-in's database."""
	return Connection(frappe.db.create_connection())


def claimed(limit: int = 100) -> list:
	rows_ = outbox.claim(frappe.db, Lease("d1", NOW + timedelta(minutes=5)), NOW, limit)
	frappe.db.commit()  # the claim's transaction ends, as the drainer commits it
	return rows_


def test_a_batch_is_marked_sent_on_the_markers_own_connection(site):
	topic = "erpnext.marker"
	commit_transaction([event(f"m{i}", COMPANIES[i % 3], topic) for i in range(6)])
	batch = claimed()
	marker = Marker(second_connection())
	try:
		marker.prepare()
		marker.submit([Published(r["name"], 2, 100 + i) for i, r in enumerate(batch)], NOW)
		marker.wait()
	finally:
		marker.close()
	got = rows()
	assert [(r.status, r.kafka_partition, r.kafka_offset, r.lease_owner) for r in got] == [
		(Status.SENT, 2, 100 + i, None) for i in range(6)
	]


def test_a_mark_runs_while_the_drainers_connection_claims(site):
	"""The marker's UPDATE and the drainer's claim hold no lock the other waits for: the
	claim of the next rows completes while the marker's transaction is still open."""
	topic = "erpnext.marker"
	commit_transaction([event(f"a{i}", COMPANIES[0], topic) for i in range(3)])
	first = claimed()
	commit_transaction([event(f"b{i}", COMPANIES[1], topic) for i in range(3)])
	entered, release = threading.Event(), threading.Event()

	class Holding(Connection):
		def commit(self) -> None:
			entered.set()  # the UPDATE ran; its transaction stays open until released
			release.wait(10)
			super().commit()

	marker = Marker(Holding(frappe.db.create_connection()))
	try:
		marker.submit([Published(r["name"], 0, i) for i, r in enumerate(first)], NOW)
		assert entered.wait(10)
		outbox.use_read_committed(frappe.db)
		frappe.db.commit()  # the isolation level applies from the next transaction (as `Drainer.prepare`)
		second = claimed()
		assert [r["reference_name"] for r in second] == ["b0", "b1", "b2"]
		release.set()
		marker.wait()
	finally:
		release.set()
		marker.close()
		frappe.db.sql("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
	assert {r.status for r in rows() if r.company == COMPANIES[0]} == {Status.SENT}


class FailingConnection(Connection):
	def sql(self, query, values=(), as_dict=False):
		if query.startswith("UPDATE"):
			raise RuntimeError("the marker's connection is gone")
		return super().sql(query, values, as_dict)


def test_a_failed_mark_is_raised_in_the_drainers_thread_once_and_leaves_the_rows_queued(site):
	topic = "erpnext.marker"
	commit_transaction([event("f1", COMPANIES[0], topic)])
	batch = claimed()
	marker = Marker(FailingConnection(frappe.db.create_connection()))
	try:
		marker.submit([Published(batch[0]["name"], 0, 1)], NOW)
		with pytest.raises(RuntimeError, match="connection is gone"):
			marker.wait()
		marker.wait()  # raised once: the drainer handles it once
	finally:
		marker.close()
	(row,) = rows()
	assert row.status == Status.QUEUED and row.lease_owner == "d1"  # delivered again after the lease


def test_marks_commit_in_batch_order(site):
	"""`submit` waits for the previous mark, so batch n is committed before batch n+1."""
	topic = "erpnext.marker"
	commit_transaction([event(f"o{i}", COMPANIES[0], topic) for i in range(4)])
	batch = claimed()
	order: list[int] = []

	class Recording(Connection):
		def commit(self) -> None:
			super().commit()
			order.append(len(order))

	marker = Marker(Recording(frappe.db.create_connection()))
	try:
		for i, row in enumerate(batch):
			marker.submit([Published(row["name"], 0, i)], NOW)
			assert len(order) == i  # the previous mark is committed before the next is handed over
	finally:
		marker.close()
	assert order == [0, 1, 2, 3]


@pytest.mark.integration
def test_a_drainer_with_a_marker_delivers_a_backlog_in_order_and_marks_every_row(
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
	got = consume(kafka_bootstrap, topic, expect=60)
	assert all(len(copies) == 1 for copies in by_event_id(got).values()) and len(got) == 60
	where = {(m.partition, m.offset): m.headers["ce_id"] for m in got}
	assert all(where[(r.kafka_partition, r.kafka_offset)] == r.event_id for r in log)
	for company in COMPANIES:  # each company's events in its sequence order, in one partition
		mine = sorted((m for m in got if m.key == company.encode()), key=lambda m: m.offset)
		assert [int(m.headers["es_company_sequence"]) for m in mine] == list(range(1, 21))
