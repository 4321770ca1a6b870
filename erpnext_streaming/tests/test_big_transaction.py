"""A big transaction on a real ERPNext (issue "Never break or stall the ERP"): a Journal Entry
of 20,000 accounts rows submits with streaming on, and its before_commit flush writes one
event per GL Entry row ERPNext posted, in gapless company sequences, in as many delivery
bundles as the server's `max_allowed_packet` needs (twin of tests/test_outbox_size.py,
which writes 30,000 synthetic events under a 1 MiB packet).

ERPNext's JournalEntry.submit() queues a background job for more than 100 rows
(queue_action("submit") -> Document._submit); the test calls `_submit()` itself, as that
job does, and "commits" through `commits_as_savepoints` (the outbox write runs in
before_commit). Never really commits: tearDown rolls everything back.

Prints how long the insert, `_submit()` and the before_commit flush took.
"""

import math
from time import perf_counter

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import today

from erpnext_streaming import catalog
from erpnext_streaming.constants import BUNDLE_TABLE, EVENT_LOG_TABLE, Status
from erpnext_streaming.emitters import handler
from erpnext_streaming.outbox.mariadb import statement_budget
from erpnext_streaming.outbox.records import SEQUENCE_TABLE
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.streaming_case import StreamingTestCase
from erpnext_streaming.tests.utils import commits_as_savepoints, enable_streaming

ROWS = 20_000  # the issue asks for >= 20,000: 10,000 debit and 10,000 credit lines
DEBIT_ACCOUNT_NAME = "Office Rent"  # an expense ledger of the Standard chart: no party
AMOUNT = 1.25


def company_sequence(company: str) -> int:
	"""The last sequence number the company's counter handed out (0 before its first event)."""
	found = frappe.db.sql(f"SELECT `last_sequence` FROM `{SEQUENCE_TABLE}` WHERE `name` = %s", (company,))
	return int(found[0][0]) if found else 0


class TestBigTransaction(StreamingTestCase):
	def accounts(self) -> tuple[str, str]:
		"""Two non-group ledgers of the company that need no party: its Cash account and an
		expense account."""
		company = self.records.company
		cash = frappe.db.get_value("Company", company, "default_cash_account") or frappe.db.get_value(
			"Account", {"company": company, "account_type": "Cash", "is_group": 0}, "name"
		)
		expense = frappe.db.get_value(
			"Account",
			{"company": company, "account_name": DEBIT_ACCOUNT_NAME, "is_group": 0},
			"name",
		)
		self.assertTrue(cash and expense, (cash, expense))
		return expense, cash

	def journal_entry(self):
		debit_account, credit_account = self.accounts()
		rows = []
		for i in range(ROWS):
			row = {"account": (debit_account, credit_account)[i % 2], "cost_center": self.records.cost_center}
			row["debit_in_account_currency" if i % 2 == 0 else "credit_in_account_currency"] = AMOUNT
			rows.append(row)
		return frappe.get_doc(
			{
				"doctype": "Journal Entry",
				"voucher_type": "Journal Entry",
				"company": self.records.company,
				"posting_date": today(),
				"user_remark": "erpnext_streaming big transaction test",
				"accounts": rows,
			}
		)

	def test_a_journal_entry_of_20000_rows_submits_and_streams_every_gl_entry(self):
		company = self.records.company
		(packet,) = frappe.db.sql("SELECT @@max_allowed_packet")[0]
		budget = statement_budget(frappe.db)
		print(f"\nmax_allowed_packet {int(packet):,} bytes; statement budget {budget:,} bytes")

		je = self.journal_entry()
		started = perf_counter()
		je.insert()
		inserted = perf_counter() - started
		self.assertEqual(len(je.accounts), ROWS)
		self.assertEqual((je.total_debit, je.total_credit), (ROWS // 2 * AMOUNT, ROWS // 2 * AMOUNT))

		with commits_as_savepoints():
			frappe.db.commit()  # the draft's own events, if any, are not this test's subject
			last_event = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `{EVENT_LOG_TABLE}`")[0][0]
			last_bundle = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `{BUNDLE_TABLE}`")[0][0]
			last_sequence = company_sequence(company)

			started = perf_counter()
			je._submit()  # what the queued "submit" job runs
			submitted = perf_counter() - started
			started = perf_counter()
			frappe.db.commit()  # the before_commit flush: the outbox write
			flushed = perf_counter() - started

			self.assertEqual(frappe.db.get_value("Journal Entry", je.name, "docstatus"), 1)
			gl_entries = frappe.db.count("GL Entry", {"voucher_no": je.name, "is_cancelled": 0})
			events = frappe.db.sql(
				f"SELECT reference_doctype, reference_name, company, company_sequence, status "
				f"FROM `{EVENT_LOG_TABLE}` WHERE name > %s ORDER BY name",
				(last_event,),
				as_dict=True,
			)
			streams_journal_entry = catalog.get_catalog().route("Journal Entry", "on_submit") is not None
			print(
				f"Journal Entry {je.name}: {ROWS:,} rows, {gl_entries:,} GL Entries; "
				f"insert {inserted:.1f} s, _submit() {submitted:.1f} s, before_commit flush {flushed:.1f} s; "
				f"{len(events):,} events (Journal Entry streamed: {streams_journal_entry})"
			)
			errors = frappe.get_all(
				"Error Log", filters={"method": ("like", "erpnext_streaming%")}, pluck="method", limit=3
			)
			self.assertTrue(events, f"the flush wrote no events; Error Log: {errors}")

			# one GL Entry event per GL Entry row ERPNext wrote, plus the voucher's own if streamed
			self.assertEqual(gl_entries, ROWS)  # one per accounts row (ERPNext merges on voucher_detail_no)
			gl_names = set(
				frappe.get_all("GL Entry", filters={"voucher_no": je.name, "is_cancelled": 0}, pluck="name")
			)
			gl_events = [e for e in events if e.reference_doctype == "GL Entry"]
			self.assertEqual(len(gl_events), gl_entries)
			self.assertEqual({e.reference_name for e in gl_events}, gl_names)
			voucher_events = [e for e in events if e.reference_doctype == "Journal Entry"]
			self.assertEqual(len(voucher_events), int(streams_journal_entry))
			self.assertEqual(len(events), gl_entries + int(streams_journal_entry))
			self.assertEqual({e.status for e in events}, {Status.QUEUED})
			self.assertEqual({e.company for e in events}, {company})

			# the company's sequence goes on without a gap, in the rows' order
			self.assertEqual(
				[e.company_sequence for e in events],
				list(range(last_sequence + 1, last_sequence + 1 + len(events))),
			)
			self.assertEqual(company_sequence(company), last_sequence + len(events))

			# the outbox cut the events into several bundles under the packet limit
			bundles = frappe.db.sql(
				f"SELECT name, company, events, LENGTH(messages) AS size FROM `{BUNDLE_TABLE}` "
				"WHERE name > %s ORDER BY name",
				(last_bundle,),
				as_dict=True,
			)
			total = sum(b.size for b in bundles)
			print(
				f"{len(bundles)} bundles, {total:,} bytes of messages, the largest {max(b.size for b in bundles):,}"
			)
			self.assertEqual({b.company for b in bundles}, {company})
			self.assertEqual(sum(b.events for b in bundles), len(events))
			self.assertTrue(all(b.size < packet for b in bundles), [b.size for b in bundles])
			self.assertGreaterEqual(len(bundles), math.ceil(total / budget))
			if total > budget:  # on this bench: max_allowed_packet 16 MiB, about 20 MB of messages
				self.assertGreater(len(bundles), 1)
