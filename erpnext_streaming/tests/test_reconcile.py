"""`bench streaming reconcile` on a real ERPNext and the bench's Kafka (twin of
tests/test_reconcile.py).

Each test makes a company of its own (reconcile compares a whole company, and the site's
other companies may hold anything) and posts its ledger: a stock receipt of a new item,
an invoice that updates stock, a payment of it and, when the catalog streams Payment
Ledger Entry, a second payment that is cancelled. The app captures the rows;
the app's drainer (run in-process on this connection, as in test_large_invoice.py)
delivers them to topics of this run; then reconcile reads those topics and ERPNext's
tables on this same connection, so it sees the test's uncommitted rows and nothing
outlives the test (commits are savepoints, tearDown rolls back, the topics are deleted).
"""

import dataclasses
import json
import os
import time
import uuid
from unittest.mock import patch

import frappe
from click.testing import CliRunner
from confluent_kafka.admin import AdminClient, NewTopic
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime, today

from erpnext_streaming import catalog, commands, kafka_config
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE, topic_slug
from erpnext_streaming.delivery import jobs
from erpnext_streaming.delivery.drainer import Drainer
from erpnext_streaming.delivery.environment import NoHeartbeat, SystemClock
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.emitters import handler
from erpnext_streaming.operations import reconcile
from erpnext_streaming.settings import StreamingConfig
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.delivery_records import in_process_drainer
from erpnext_streaming.tests.test_commands import this_site
from erpnext_streaming.tests.test_large_invoice import BOOTSTRAP
from erpnext_streaming.tests.utils import commits_as_savepoints, enable_streaming


class TestReconcile(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		cls.records = erpnext_records.ensure()

	def setUp(self):
		"""Topics of this test alone: a rolled-back test leaves its events on its own topics."""
		run = uuid.uuid4().hex[:8]
		self.rows = [
			{**row, "topic": f"erpnext.test-reconcile-{run}.{topic_slug(row['document_type'])}"}
			for row in catalog.default_catalog_rows()
			if row["document_type"] in reconcile.LEDGERS
		]
		self.dead_letters = f"erpnext.test-reconcile-{run}.dead-letter"
		admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
		new = [NewTopic(row["topic"], num_partitions=3, replication_factor=1) for row in self.rows]
		for future in admin.create_topics(new).values():
			future.result(15)
		self.isolation = frappe.db.sql("SELECT @@SESSION.tx_isolation")[0][0]
		enable_streaming(event_catalog=self.rows, dead_letter_topic=self.dead_letters)
		self.company = frappe.get_doc(
			{
				"doctype": "Company",
				"company_name": f"_ES Reconcile {run}",
				"abbr": f"_ESR{run[:4]}",
				"default_currency": erpnext_records.CURRENCY,
				"country": erpnext_records.COUNTRY,
				"chart_of_accounts": "Standard",
				"enable_perpetual_inventory": 1,
			}
		).insert(ignore_permissions=True)  # ERPNext makes its accounts, cost center, warehouses
		self.warehouse = f"Stores - {self.company.abbr}"

	def tearDown(self):
		handler.clear()
		frappe.db.rollback()
		level = self.isolation.replace("-", " ")  # the drainer set READ COMMITTED for the session
		frappe.db.sql(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
		catalog.clear_cache()
		admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
		topics = [row["topic"] for row in self.rows] + [self.dead_letters]
		for topic, future in admin.delete_topics(topics, operation_timeout=15).items():
			try:
				future.result(20)
			except Exception as e:  # the dead-letter topic exists only if something went Dead
				if topic != self.dead_letters:
					print(f"topic {topic} not deleted: {e}")

	# -- helpers ----------------------------------------------------------------------

	def post(self, lose_the_receipts_events: bool = False):
		"""The test's ledger, committed (as savepoints) and delivered."""
		from erpnext.accounts.doctype.payment_entry.payment_entry import get_payment_entry

		company = self.company
		item = erpnext_records.stock_item(f"_ES Reconciled {frappe.generate_hash(length=6)}").name
		with commits_as_savepoints():
			erpnext_records.stock_entry(
				company=company.name, item_code=item, qty=10, rate=10, target=self.warehouse
			)
			if lose_the_receipts_events:
				handler.clear()  # ledger rows without their events
			invoice = erpnext_records.sales_invoice(
				company=company.name, debit_to=company.default_receivable_account,
				income_account=company.default_income_account, cost_center=company.cost_center,
				expense_account=company.default_expense_account, warehouse=self.warehouse,
				item_code=item, qty=2, rate=50, update_stock=1,
			)  # fmt: skip
			frappe.db.commit()  # one business transaction (a savepoint under commits_as_savepoints)
			for cancel in (False, "Payment Ledger Entry" in self.topics()):
				payment = get_payment_entry("Sales Invoice", invoice.name)
				payment.update(
					{
						"reference_no": "R-1",
						"reference_date": today(),
						"paid_amount": 30,
						"received_amount": 30,
					}
				)
				payment.references[0].allocated_amount = 30
				payment.submit()
				if cancel:
					frappe.db.commit()  # the payment is submitted before it is cancelled, as on a site
					payment.cancel()
				frappe.db.commit()  # the payment's (or its cancel's) transaction ends
			self.drain()
		return invoice

	def topics(self) -> dict[str, str]:
		return {row["document_type"]: row["topic"] for row in self.rows}

	def drain(self):
		"""The app's drainer in-process until every event of the test's topics is Sent (a topic
		made a moment ago may hold the first attempt: the company is retried after its backoff)."""
		topics = [row["topic"] for row in self.rows]
		for _ in range(30):
			self.drain_once()
			if not frappe.db.exists(EVENT_LOG_DOCTYPE, {"topic": ("in", topics), "status": ("!=", "Sent")}):
				return
			time.sleep(1)
		pending = frappe.get_all(
			EVENT_LOG_DOCTYPE, {"topic": ("in", topics), "status": ("!=", "Sent")}, ["status", "last_error"]
		)
		self.fail(f"the test's events were not all delivered: {pending[:3]}")

	def drain_once(self):
		in_process_drainer().run()

	def reconcile(self) -> reconcile.Report:
		doc = frappe.get_single(SETTINGS_DOCTYPE)
		consumer = reconcile._consumer(doc, StreamingConfig.from_doc(doc), self.topics())
		try:
			return reconcile.reconcile(consumer, frappe.db, reconcile.Scope(self.company.name), self.topics())
		finally:
			consumer.close()

	def unavailable(self) -> list[str]:
		"""What reconcile says of the ledgers the catalog does not stream (none once it streams all three)."""
		return [
			f"{ledger} is not in the Event Catalog (or not enabled): its figures cannot be compared"
			for ledger in reconcile.LEDGERS
			if ledger not in self.topics()
		]

	# -- the tests --------------------------------------------------------------------

	def test_the_stream_of_a_receipt_an_invoice_and_payments_equals_the_ledger(self):
		invoice = self.post()
		report = self.reconcile()
		self.assertEqual((report.problems, [d.text() for d in report.differences]), (self.unavailable(), []))
		counts = report.companies[self.company.name]
		self.assertEqual(counts["vouchers_without_events"] + counts["vouchers_only_in_stream"], 0)
		self.assertGreaterEqual(
			counts["vouchers_with_events"], 5
		)  # GL and SLE of receipt and invoice, GL of a payment
		self.assertEqual(counts["stock_keys"], 1)
		if "Payment Ledger Entry" in self.topics():
			self.assertEqual(counts["invoices"], 1)
			self.assertEqual(frappe.db.get_value("Sales Invoice", invoice.name, "outstanding_amount"), 70)

	def test_ledger_rows_without_events_are_differences_and_the_command_exits_1(self):
		self.post(lose_the_receipts_events=True)
		path = frappe.get_site_path("private", reconcile.RESULT_FILE)
		kept = open(path).read() if os.path.exists(path) else None
		try:
			with patch.object(commands, "connect", this_site):
				result = CliRunner().invoke(
					commands.streaming,
					["reconcile", "--quiet", "--company", self.company.name],
					obj={"sites": [frappe.local.site]},
					catch_exceptions=False,
				)
			stored = reconcile.last_result()
		finally:
			if kept is None:
				os.remove(path)
			else:
				with open(path, "w") as f:
					f.write(kept)
		self.assertEqual(result.exit_code, 1, result.output)
		company = self.company.name
		self.assertIn(f"{company}: voucher GL Entry / Stock Entry / ", result.output)
		self.assertIn(f"{company}: voucher Stock Ledger Entry / Stock Entry / ", result.output)
		self.assertIn(f"{company}: GL debit/credit ", result.output)
		self.assertTrue(result.output.rstrip().endswith("The stream differs"))
		self.assertFalse(stored["ok"])
		self.assertGreaterEqual(stored["differences"], 2)
		self.assertEqual(json.loads(json.dumps(stored))["scope"]["company"], company)
