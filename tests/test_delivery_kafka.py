"""Delivery end to end: user transactions -> outbox -> drainer in real forking RQ workers ->
the Tansu broker -> a consumer. Real MariaDB, Redis, RQ and Kafka protocol; no mocks.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict

import frappe
import pytest
from delivery_support import (
	CODEC,
	COMPANIES,
	PARTITIONS,
	all_delivered,
	by_event_id,
	commit_transaction,
	configure,
	consume,
	create_topics,
	drainer_running,
	drainer_stats,
	event,
	java_partition,
	murmur2,
	new_topic,
	rows,
	wait_for,
)

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import messages
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration


def test_the_test_murmur2_is_kafkas():
	"""Vectors from Kafka's own UtilsTest.testMurmur2 (Java ints)."""
	assert murmur2(b"21") == -973932308
	assert murmur2(b"foobar") == -790332482
	assert murmur2(b"a-little-bit-long-string") == -985981536
	assert murmur2(b"a-little-bit-longer-string") == -1486304829
	assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
	assert murmur2(b"abc") == 479470107
	assert len({java_partition(c.encode(), PARTITIONS) for c in COMPANIES}) == 3


def test_transactions_of_three_companies_arrive_keyed_and_in_company_order(site, kafka_bootstrap, workers):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters, batch_size=25)
	pool = workers.start(2)  # two forking rq worker processes on the long queue

	rng = random.Random(7)
	written = []
	for i in range(60):
		batch = [event(f"T{i}-{j}", rng.choice(COMPANIES), topic) for j in range(rng.randint(1, 3))]
		commit_transaction(batch)
		written += batch
	wait_for(all_delivered, 60, "every event delivered")

	got = consume(kafka_bootstrap, topic, expect=len(written))
	copies = by_event_id(got)
	assert set(copies) == {r.event_id for r in written}, "nothing lost"
	assert all(len(c) == 1 for c in copies.values()), "no duplicates on the happy path"

	by_company = defaultdict(list)
	for message in sorted(got, key=lambda m: (m.partition, m.offset)):
		by_company[message.key.decode()].append(message)
	assert set(by_company) == set(COMPANIES)  # key = company, UTF-8
	log = {r.event_id: r for r in rows()}
	for company, company_messages in by_company.items():
		partitions = {m.partition for m in company_messages}
		assert partitions == {java_partition(company.encode(), PARTITIONS)}, company
		sequences = [int(m.headers["es_company_sequence"]) for m in company_messages]
		assert sequences == list(range(1, len(company_messages) + 1)), f"{company} in sequence order, gapless"
		for m in company_messages:  # the row says where its message is
			row = log[m.headers["ce_id"]]
			assert (row.status, row.kafka_partition, row.kafka_offset) == (Status.SENT, m.partition, m.offset)
			assert row.company_sequence == int(m.headers["es_company_sequence"]) and row.lease_owner is None

	by_id = {r.event_id: r for r in written}
	for message in got:  # every message: the bytes written, decoded with the shipped schema
		record = by_id[message.headers["ce_id"]]
		assert message.value == record.payload
		assert CODEC.reference(message.value) == record.reference_name
	sample = got[0]
	record = by_id[sample.headers["ce_id"]]
	assert sample.headers == {
		"ce_id": record.event_id,
		"ce_type": "io.erpnext.streaming.gl-entry.posted",
		"ce_source": site,
		"ce_subject": f"GL Entry/{record.reference_name}",
		"ce_time": "2026-11-23T09:30:15.250000+05:30",  # site time zone Asia/Kolkata
		"ce_specversion": "1.0",
		"content-type": "application/avro",
		"schema_name": CODEC.name,
		"schema_version": "1",
		"schema_fingerprint": CODEC.fingerprint,
		"es_company_sequence": sample.headers["es_company_sequence"],
	}
	assert sample.headers["ce_type"] == messages.ce_type("GL Entry", "posted")

	wait_for(lambda: not drainer_running() and drainer_stats().get("runs"), 30, "drainers left when idle")
	stats = drainer_stats()
	print(f"\ndrainer statistics: {stats}")
	assert int(stats["sent"]) == len(written)
	# producer start-up paid at most once per drain, not per transaction
	assert 1 <= int(stats["producers"]) <= int(stats["runs"]) < 60
	assert all(p.poll() is None for p in pool), "both workers still running"


def test_a_rolled_back_transaction_leaves_no_rows_and_no_messages(site, kafka_bootstrap, workers):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters, idle_exit_seconds=30)
	workers.start(1)
	first = [event("before", "Acme Corp", topic)]
	commit_transaction(first)
	wait_for(lambda: all_delivered() and drainer_running(), 30, "a drainer is running")

	# written inside the transaction while the drainer runs (polling every 0.5 s) ...
	doomed = [event("doomed-1", "Acme Corp", topic), event("doomed-2", "Globex Ltd", topic)]
	write(frappe.db, doomed, first[0].event_time)
	time.sleep(1.5)  # several drainer cycles see nothing: the rows are not committed
	frappe.db.rollback()
	after = [event("after", "Acme Corp", topic)]
	commit_transaction(after)
	wait_for(all_delivered, 30, "the committed events delivered")

	got = consume(kafka_bootstrap, topic, expect=2)
	assert sorted(by_event_id(got)) == sorted(e.event_id for e in first + after)
	assert {r.event_id for r in rows()} == {e.event_id for e in first + after}
	assert [r.company_sequence for r in rows()] == [1, 2]  # the rollback used no number


def test_a_poison_record_goes_dead_with_a_dead_letter_copy_and_the_batch_is_delivered(
	site, kafka_bootstrap, workers
):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	# at 20,000 bytes a part carries at most 10,000: 100 parts (the most) hold 1,000,000
	configure(kafka_bootstrap, dead_letters, properties={"message.max.bytes": "20000"})
	good = [event(f"ok-{i}", COMPANIES[i % 3], topic) for i in range(6)]
	poison = event("too-big", "Acme Corp", topic, filler=b"x" * 1_100_000)
	broken = event(
		"capture-failed", "Globex Ltd", topic, status=Status.DEAD, error="capture: KeyError 'items'"
	)
	commit_transaction([*good[:3], poison, broken, *good[3:]])
	workers.start(1)
	wait_for(all_delivered, 60, "delivered or dead-lettered")

	log = {r.event_id: r for r in rows()}
	assert {log[e.event_id].status for e in good} == {Status.SENT}
	dead = log[poison.event_id]
	assert dead.status == Status.DEAD and dead.attempts == 1
	assert "MSG_SIZE_TOO_LARGE" in dead.last_error and dead.dead_lettered_at is not None
	assert "parts of at most 10000 bytes" in dead.last_error and "more than 100" in dead.last_error
	assert log[broken.event_id].status == Status.DEAD and log[broken.event_id].dead_lettered_at is not None

	delivered = consume(kafka_bootstrap, topic, expect=len(good))
	assert sorted(by_event_id(delivered)) == sorted(e.event_id for e in good)
	acme = [int(m.headers["es_company_sequence"]) for m in delivered if m.key == b"Acme Corp"]
	assert acme == [1, 3]  # sequence 2 is the dead letter: the consumer sees the gap explained

	copies = by_event_id(consume(kafka_bootstrap, dead_letters, expect=2))
	assert set(copies) == {poison.event_id, broken.event_id}
	(copy,) = copies[poison.event_id]
	assert copy.key == b"Acme Corp" and copy.value is None  # too large even here: kept in the row
	assert copy.headers["ce_subject"] == "GL Entry/too-big" and copy.headers["es_company_sequence"] == "2"
	assert copy.headers["schema_fingerprint"] == CODEC.fingerprint  # the original headers ...
	assert "MSG_SIZE_TOO_LARGE" in copy.headers["es_error"]  # ... plus the error
	assert copy.headers["es_original_topic"] == topic and copy.headers["es_attempts"] == "1"
	assert copy.headers["es_event_log"] == str(dead.name) and "es_payload_omitted" in copy.headers
	assert (dead.kafka_partition, dead.kafka_offset) == (copy.partition, copy.offset)
	(capture_copy,) = copies[broken.event_id]
	assert capture_copy.headers["es_error"] == "capture: KeyError 'items'"
	assert CODEC.reference(capture_copy.value) == "capture-failed"


def test_a_damaged_bundle_sends_nothing_and_its_events_go_dead_with_copies_from_the_event_log(
	site, kafka_bootstrap, workers
):
	"""A bundle whose values no longer match its events (damaged by hand) is not sent in
	part: its events go Dead with the reason, and their dead-letter copies carry the payloads
	of their Event Log rows; the other company's bundle is delivered."""
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters)
	damaged = [event(f"damaged-{i}", "Acme Corp", topic) for i in range(2)]
	good = event("ok", "Globex Ltd", topic)
	commit_transaction([*damaged, good])
	frappe.db.sql(
		"UPDATE `tabStreaming Delivery Bundle` SET `messages` = LEFT(`messages`, CHAR_LENGTH(`messages`) - 1) "
		"WHERE `company` = 'Acme Corp'"
	)
	frappe.db.commit()  # the drainer, in a worker process, reads only what is committed
	workers.start(1)
	wait_for(all_delivered, 60, "delivered or dead-lettered")

	log = {r.event_id: r for r in rows()}
	assert log[good.event_id].status == Status.SENT
	for record in damaged:
		row = log[record.event_id]
		assert row.status == Status.DEAD and row.dead_lettered_at is not None
		assert row.last_error.startswith("unreadable bundle ") and "values hold" in row.last_error
	assert list(by_event_id(consume(kafka_bootstrap, topic, expect=1))) == [good.event_id]
	copies = by_event_id(consume(kafka_bootstrap, dead_letters, expect=2))
	assert {e: [c.value for c in copies[e]] for e in copies} == {r.event_id: [r.payload] for r in damaged}
