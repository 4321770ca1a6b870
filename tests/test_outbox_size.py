"""A transaction of any size: the outbox splits its statements by bytes under the server's
`max_allowed_packet`, writes several bundles per company when one would not fit, and keeps
order and gapless sequences; the drainer delivers it whole and in order.

ERPNext submits a Journal Entry of tens of thousands of rows, or a Stock Reconciliation
of thousands, in one transaction; a single multi-row INSERT of their events is refused by
MariaDB ("Got a packet bigger than 'max_allowed_packet' bytes", error 1153) and the
document cannot be submitted. Here the server's limit is lowered to 1 MiB for the test, so
a transaction of 30,000 events needs dozens of statements.
"""

from __future__ import annotations

from datetime import datetime

import frappe
import pymysql
import pytest
from delivery_support import (
	COMPANIES,
	all_delivered,
	assert_company_order,
	by_event_id,
	configure,
	consume,
	event,
	new_topic,
	sweeping,
	wait_for,
)
from frappe import standin

from erpnext_streaming.constants import BUNDLE_TABLE, EVENT_LOG_TABLE, Status
from erpnext_streaming.emitters.handler import message_context
from erpnext_streaming.outbox.write import write

pytestmark = pytest.mark.integration

PACKET = 1 << 20  # 1 MiB: MariaDB's smallest sensible max_allowed_packet
EVENTS = 30_000


@pytest.fixture
def small_packets(site, mariadb, redis_url):
	"""The server's max_allowed_packet at 1 MiB; the site reconnects to see it."""
	params = {k: v for k, v in mariadb.items() if k != "tables"}
	admin = pymysql.connect(autocommit=True, **params)
	with admin.cursor() as cur:
		cur.execute("SELECT @@GLOBAL.max_allowed_packet")
		(before,) = cur.fetchone()
		cur.execute(f"SET GLOBAL max_allowed_packet = {PACKET}")
	standin.init_site(frappe.local.site, params, redis_url)
	try:
		yield PACKET
	finally:
		with admin.cursor() as cur:
			cur.execute(f"SET GLOBAL max_allowed_packet = {before}")
		admin.close()


def big_transaction(topic: str) -> list:
	return [event(f"JE-{i}", COMPANIES[i % 3], topic, filler=b"x" * 200) for i in range(EVENTS)]


def test_a_30000_event_transaction_is_written_in_statements_under_the_packet_limit(
	small_packets, kafka_bootstrap
):
	records = big_transaction("erpnext.test-big")
	write(frappe.db, records, datetime.now(), context=message_context())
	frappe.db.commit()  # the user's transaction commits: its events become deliverable

	rows = frappe.db.sql(
		f"SELECT company, company_sequence, reference_name FROM `{EVENT_LOG_TABLE}` ORDER BY name",
		as_dict=True,
	)
	assert [r.reference_name for r in rows] == [r.reference_name for r in records], "buffer order kept"
	for company in COMPANIES:
		sequences = [r.company_sequence for r in rows if r.company == company]
		assert sequences == list(range(1, EVENTS // 3 + 1)), f"{company}: gapless"
	bundles = frappe.db.sql(
		f"SELECT name, company, events, LENGTH(messages) AS size FROM `{BUNDLE_TABLE}` ORDER BY name",
		as_dict=True,
	)
	assert sum(b.events for b in bundles) == EVENTS
	assert all(b.size < small_packets for b in bundles), max(b.size for b in bundles)
	per_company = {c: [b for b in bundles if b.company == c] for c in COMPANIES}
	assert all(len(found) > 1 for found in per_company.values()), "several bundles per company"
	print(f"\n{EVENTS} events in {len(bundles)} bundles, the largest {max(b.size for b in bundles):,} bytes")


def test_a_30000_event_transaction_is_delivered_whole_and_in_order(small_packets, kafka_bootstrap, workers):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	configure(kafka_bootstrap, dead_letters, batch_size=10_000)
	records = big_transaction(topic)
	write(frappe.db, records, datetime.now(), context=message_context())
	frappe.db.commit()  # the user's transaction commits: its events become deliverable
	workers.start(1)
	wait_for(sweeping(all_delivered), 300, "the big transaction delivered", interval=1)
	assert {r for (r,) in frappe.db.sql(f"SELECT DISTINCT status FROM `{EVENT_LOG_TABLE}`")} == {Status.SENT}
	got = consume(kafka_bootstrap, topic, expect=EVENTS, timeout=120, settle=2)
	assert set(by_event_id(got)) == {r.event_id for r in records}, "nothing lost"
	assert_company_order(got)
