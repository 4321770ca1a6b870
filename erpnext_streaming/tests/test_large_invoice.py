"""A large invoice on a real ERPNext and a real Kafka (issue "Never break or stall the ERP"): a
Sales Invoice of 5,000 item lines is inserted and submitted with streaming on; its event
(`submitted`, carrying the whole document, about 1.45 MB, over the 1,000,000 bytes of
librdkafka's default `message.max.bytes`; the draft's insert emits nothing) goes to the
bench's Kafka as ordered parts, and the consumer kit puts them back together byte for byte
(twin of tests/test_delivery_parts.py, which sends a synthetic 5 MB event from a drainer in
an `rq worker`).

The invoice is ERPNext's own (create_sales_invoice through `erpnext_records.sales_invoice`,
no stock update: `update_stock` 0), inserted and submitted in the test's transaction; the
outbox write runs in before_commit through `commits_as_savepoints`. Nothing is ever
committed: tearDown rolls everything back.

Delivery is the app's drainer (`delivery.drainer.Drainer.run`), run in-process on this
test's `frappe.db` connection with the producer, retry policy and framer the drainer job
builds from Streaming Settings (`delivery.jobs`): only the wake-up source and the heartbeat
are no-ops (no Redis: the bench's own drainer must not hear of a transaction it cannot
see), and the drainer leaves as soon as it is idle. Its commits are savepoints; it sees
the bundle this transaction wrote, claims it, splits the event into parts
(`delivery.publisher`), records the delivery and settles the Event Log row Sent, all
inside the test's transaction. Its session is set to READ COMMITTED by the drainer
(`mariadb.use_read_committed`); tearDown sets the session's level back.

The catalog streams Sales Invoice alone, to a topic of this run (created here, deleted
after), so the rolled-back invoice reaches no topic anybody reads, and its GL Entries are
not streamed at all. Failed copies would go to a dead-letter topic of this run, deleted
after too.

The topic is then read with confluent_kafka and the parts reassembled with the kit's
`Reassembler`, decoded with its `Decoder`, and read once more through `EventConsumer`,
as a consumer runs it. Prints the sizes, parts, partition and offsets, and the times.
"""

import dataclasses
import time
import uuid
from datetime import timedelta
from time import perf_counter

import frappe
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming import catalog, kafka_config
from erpnext_streaming.constants import (
	BUNDLE_TABLE,
	EVENT_LOG_DOCTYPE,
	EVENT_LOG_TABLE,
	PART_HEADER,
	PART_OF_HEADER,
	PARTS_CHECKSUM_HEADER,
	SETTINGS_DOCTYPE,
	Status,
)
from erpnext_streaming.consumer import Decoder, EventConsumer, Reassembler
from erpnext_streaming.delivery import jobs, parts
from erpnext_streaming.delivery.drainer import Drainer
from erpnext_streaming.delivery.environment import NoHeartbeat, SystemClock
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.emitters import handler
from erpnext_streaming.outbox.records import decode_payload
from erpnext_streaming.settings import StreamingConfig
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.delivery_records import in_process_drainer
from erpnext_streaming.tests.utils import commits_as_savepoints, enable_streaming

LINES = 5_000  # the issue asks for >= 5,000 item lines
RATE = 10.0
BOOTSTRAP = "127.0.0.1:9092"  # the bench's Kafka (enable_streaming's bootstrap list)
PARTITIONS = 3
READ_TIMEOUT = 60.0


class TestLargeInvoice(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.records = erpnext_records.ensure()
		run = uuid.uuid4().hex[:8]
		cls.topic = f"erpnext.test-large-invoice-{run}"
		cls.dead_letters = f"erpnext.test-large-invoice-{run}.dead-letter"
		admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
		new = NewTopic(cls.topic, num_partitions=PARTITIONS, replication_factor=1)
		admin.create_topics([new])[cls.topic].result(15)

	@classmethod
	def tearDownClass(cls):
		admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
		for topic, future in admin.delete_topics([cls.topic, cls.dead_letters], operation_timeout=15).items():
			try:
				future.result(20)
			except Exception as e:  # the dead-letter topic exists only if something went Dead
				if topic == cls.topic:
					print(f"topic {topic} not deleted: {e}")
		super().tearDownClass()

	def setUp(self):
		self.isolation = frappe.db.sql("SELECT @@SESSION.tx_isolation")[0][0]
		row = next(r for r in catalog.default_catalog_rows() if r["document_type"] == "Sales Invoice")
		enable_streaming(event_catalog=[{**row, "topic": self.topic}], dead_letter_topic=self.dead_letters)

	def tearDown(self):
		handler.clear()
		frappe.db.rollback()
		level = self.isolation.replace("-", " ")  # the drainer set READ COMMITTED for the session
		frappe.db.sql(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
		catalog.clear_cache()

	# -- helpers ----------------------------------------------------------------------

	def invoice(self):
		"""A draft Sales Invoice of LINES lines of the test item, no stock update."""
		si = erpnext_records.sales_invoice(update_stock=0, qty=1, rate=RATE, do_not_save=1)
		first = si.items[0].as_dict(no_default_fields=True)
		for _ in range(LINES - 1):
			si.append("items", {**first})
		return si

	def drain(self):
		drainer = in_process_drainer(dead_letter_topic=self.dead_letters)
		return drainer, drainer.run()

	def read_topic(self, expect: int) -> list:
		"""Every message of the topic, from the beginning, until `expect` are in."""
		consumer = Consumer(
			{
				"bootstrap.servers": BOOTSTRAP,
				"group.id": f"erpnext-streaming-test-{uuid.uuid4().hex[:8]}",
				"auto.offset.reset": "earliest",
				"enable.auto.commit": False,
			}
		)
		got = []
		try:
			consumer.subscribe([self.topic])
			deadline = time.monotonic() + READ_TIMEOUT
			while len(got) < expect and time.monotonic() < deadline:
				for m in consumer.consume(100, 0.5):
					if m.error() is None:
						got.append(m)
					elif m.error().code() != KafkaError._PARTITION_EOF:
						raise AssertionError(f"reading {self.topic}: {m.error()}")
		finally:
			consumer.close()
		return got

	def kit_events(self, messages: int) -> tuple[list, EventConsumer]:
		"""What `EventConsumer` gives for the topic once it has read `messages` messages."""
		events = []
		with EventConsumer(BOOTSTRAP, topics=[self.topic], lateness=timedelta(seconds=1)) as consumer:
			deadline = time.monotonic() + READ_TIMEOUT
			while (not events or consumer.stats["messages"] < messages) and time.monotonic() < deadline:
				events += consumer.poll(0.5)
			events += consumer.flush()
		return events, consumer

	# -- the test ---------------------------------------------------------------------

	def test_an_invoice_of_5000_lines_goes_to_kafka_in_parts_and_comes_back_whole(self):
		"""The event of a 5,000-line invoice goes in parts and comes back whole.

		The draft's insert (one transaction) emits nothing: drafts are not business events
		(issue 17); its submit (the next) streams `submitted` with the whole document, over
		the limit."""
		company = self.records.company
		si = self.invoice()
		started = perf_counter()
		si.insert()
		inserted = perf_counter() - started
		self.assertEqual(len(si.items), LINES)

		with commits_as_savepoints():
			last_event = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `{EVENT_LOG_TABLE}`")[0][0]
			last_bundle = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `{BUNDLE_TABLE}`")[0][0]
			frappe.db.commit()  # the draft's transaction: no event
			started = perf_counter()
			si.submit()
			submitted = perf_counter() - started
			started = perf_counter()
			frappe.db.commit()  # the before_commit flush: the outbox write
			flushed = perf_counter() - started
			self.assertEqual(frappe.db.get_value("Sales Invoice", si.name, "docstatus"), 1)

			# the invoice's events, queued in one bundle per transaction
			rows = frappe.get_all(
				EVENT_LOG_DOCTYPE,
				filters={"name": (">", last_event)},
				fields=[
					"name",
					"event_id",
					"event_type",
					"reference_name",
					"company",
					"topic",
					"status",
					"payload",
				],
				order_by="name asc",
			)
			self.assertEqual(
				[
					(r.event_type.rsplit(".", 1)[-1], r.reference_name, r.company, r.topic, r.status)
					for r in rows
				],
				[("submitted", si.name, company, self.topic, Status.QUEUED)],
			)
			payloads = {r.event_id: decode_payload(r.payload) for r in rows}
			for payload in payloads.values():
				self.assertGreater(len(payload), parts.DEFAULT_LIMIT)  # over the 1 MB default
			bundles = frappe.db.sql(
				f"SELECT name, events FROM `{BUNDLE_TABLE}` WHERE name > %s", (last_bundle,), as_dict=True
			)
			self.assertEqual([b.events for b in bundles], [1])

			# the drainer delivers them, in parts
			started = perf_counter()
			drainer, stats = self.drain()
			drained = perf_counter() - started
			limit = drainer.publisher.limits.known[self.topic]
			self.assertEqual(limit, parts.DEFAULT_LIMIT)  # the topic's own 1,048,588 is larger
			counts = {e: -(-len(p) // parts.part_size(limit)) for e, p in payloads.items()}
			self.assertTrue(all(n >= 2 for n in counts.values()), counts)
			self.assertEqual(
				(stats.sent, stats.failed, stats.dead, stats.split_events, stats.parts),
				(len(rows), 0, 0, len(rows), sum(counts.values())),
				stats,
			)
			sent = {
				r.event_id: frappe.db.get_value(
					EVENT_LOG_DOCTYPE,
					r.name,
					["status", "kafka_partition", "kafka_offset", "attempts"],
					as_dict=True,
				)
				for r in rows
			}
			self.assertEqual({(s.status, s.attempts) for s in sent.values()}, {(Status.SENT, 0)})

		# the topic holds each event's parts: consecutive in one partition, with the part headers
		started = perf_counter()
		got = self.read_topic(sum(counts.values()))
		read = perf_counter() - started
		self.assertEqual(len(got), sum(counts.values()))
		by_event = {}
		for m in got:
			by_event.setdefault(dict(m.headers())[PART_OF_HEADER].decode(), []).append(m)
		self.assertEqual(set(by_event), set(payloads))
		for event_id, pieces in by_event.items():
			pieces.sort(key=lambda m: m.offset())
			count, first = counts[event_id], pieces[0].offset()
			self.assertEqual(len(pieces), count)
			self.assertEqual({m.partition() for m in pieces}, {sent[event_id].kafka_partition})
			self.assertEqual([m.offset() for m in pieces], list(range(first, first + count)))
			self.assertEqual(first, sent[event_id].kafka_offset)  # the event's offset: its first part's
			self.assertEqual({m.key() for m in pieces}, {company.encode()})
			digest = parts.checksum(payloads[event_id])
			for i, m in enumerate(pieces, 1):
				headers = {k: v.decode() for k, v in m.headers()}
				self.assertEqual(
					(headers[PART_HEADER], headers[PARTS_CHECKSUM_HEADER], headers["ce_id"]),
					(f"{i}/{count}", digest, event_id),
				)
				self.assertLessEqual(len(m.value()), parts.part_size(limit))

		# the kit puts them back together, byte for byte, and decodes the invoice
		kit, decoder = Reassembler(), Decoder()
		wholes = {}
		for m in sorted(got, key=lambda m: (m.partition(), m.offset())):
			whole = kit.push(m.value(), m.headers(), m.topic(), m.partition(), m.offset())
			if whole is not None:
				wholes[whole.headers["ce_id"]] = whole
		self.assertEqual((set(wholes), kit.pending(), kit.stats["refused"]), (set(payloads), 0, 0))
		documents = {}
		for event_id, whole in wholes.items():
			self.assertEqual(whole.value, payloads[event_id], "byte-identical to the Event Log's payload")
			self.assertEqual((whole.parts, whole.offset), (counts[event_id], sent[event_id].kafka_offset))
			event = decoder.decode(whole.value, whole.headers, whole.topic, whole.partition, whole.offset)
			self.assertEqual(
				(event.event_id, event.doctype, event.name, event.company),
				(event_id, "Sales Invoice", si.name, company),
			)
			documents[event.event_type.rsplit(".", 1)[-1]] = event.document
		self.assertEqual(set(documents), {"submitted"})
		self.assertEqual(
			(documents["submitted"]["docstatus"], len(documents["submitted"]["items"])), (1, LINES)
		)
		items = documents["submitted"]["items"]
		self.assertEqual({i["item_code"] for i in items}, {self.records.item})
		self.assertEqual([i["idx"] for i in items], list(range(1, LINES + 1)))
		self.assertEqual(documents["submitted"]["grand_total"], si.grand_total)

		# and so does EventConsumer, as a consumer runs it
		events, consumer = self.kit_events(sum(counts.values()))
		self.assertEqual(
			sorted((e.event_id, len(e.document["items"])) for e in events),
			sorted((e, LINES) for e in payloads),
		)
		self.assertFalse(consumer.errors, list(consumer.errors))
		self.assertEqual(
			(consumer.stats["messages"], consumer.reassembler.stats["events"]), (sum(counts.values()), 1)
		)

		print(
			f"\nSales Invoice {si.name}: {LINES:,} lines, grand total {si.grand_total:,.2f}; insert {inserted:.1f} s, "
			f"submit {submitted:.1f} s, before_commit flush {flushed:.2f} s; drainer {drained:.2f} s; read {read:.2f} s"
		)
		for r in rows:
			pieces = by_event[r.event_id]
			print(
				f"  {r.event_type}: {len(payloads[r.event_id]):,} bytes (limit {limit:,}) -> {counts[r.event_id]} parts of "
				f"{[len(m.value()) for m in pieces]} bytes, topic {self.topic} partition {pieces[0].partition()} "
				f"offsets {pieces[0].offset()}-{pieces[-1].offset()}"
			)
		print(f"  drainer {dataclasses.asdict(stats)}")
