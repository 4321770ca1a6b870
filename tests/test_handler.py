"""The doc_events glue on the stand-in: buffer on frappe.local, outbox at commit, never raise.

Twin on a real bench: erpnext_streaming/tests/test_capture_erpnext.py.
"""

from __future__ import annotations

from datetime import datetime

import frappe
import pytest
from fixtures.erpnext import COMPANY, gl_entry, stock_ledger_entry, submitted_sales_invoice
from fixtures.fuzz import TEMPLATES, documents, for_each_fuzzed_doctype
from frappe import standin
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from erpnext_streaming import catalog, constants
from erpnext_streaming.constants import EVENT_LOG_TABLE, SETTINGS_DOCTYPE, Status
from erpnext_streaming.emitters import handler
from erpnext_streaming.outbox.records import decode_payload
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.tests.utils import decode

pytestmark = pytest.mark.integration


def enable(**overrides):
	values = {
		"enabled": 1,
		"bootstrap_servers": "127.0.0.1:9",
		"event_catalog": catalog.default_catalog_rows(),
	}
	values.update(overrides)
	standin.set_single(SETTINGS_DOCTYPE, values)
	catalog.clear_cache()


def exists(doc):
	"""The document's row, as ERPNext has written it by the time its hooks run (the
	document's fields that are columns of the test table)."""
	columns = {row[0] for row in frappe.db.sql(f"SHOW COLUMNS FROM `tab{doc.doctype}`")}
	values = {
		k: v for k, v in vars(doc).items() if k in columns and v is not None and not isinstance(v, list)
	}
	frappe.db.sql(
		f"INSERT INTO `tab{doc.doctype}` ({', '.join(f'`{k}`' for k in values)})"
		f" VALUES ({', '.join(['%s'] * len(values))})",
		list(values.values()),
	)
	return doc


def log_rows():
	return frappe.db.sql(f"SELECT * FROM `{EVENT_LOG_TABLE}` ORDER BY name", as_dict=True)


def decoded(row):
	return decode(decode_payload(row.payload), get_event_schema(row.reference_doctype, row.schema_version))


@pytest.fixture
def streaming(site):
	from delivery_support import clear_long_queue

	enable()
	yield site
	handler.clear()
	clear_long_queue()  # the drainer jobs our commits enqueued: no worker runs them here


def test_events_wait_in_the_transaction_buffer_and_reach_the_outbox_at_commit(streaming):
	invoice = exists(submitted_sales_invoice(items=20))
	debit = exists(gl_entry("gle-1", "Debtors - WP", 100.0, 0.0))
	handler.handle(debit, "on_submit")
	handler.handle(invoice, "on_submit")
	assert len(getattr(frappe.local, handler.BUFFER_ATTR)) == 2
	assert log_rows() == []  # nothing is written before commit

	frappe.db.commit()  # the before_commit flush writes the buffered events

	assert getattr(frappe.local, handler.BUFFER_ATTR, None) is None
	rows = log_rows()
	assert [(r.reference_doctype, r.event_type, r.status) for r in rows] == [
		("GL Entry", "posted", Status.QUEUED), ("Sales Invoice", "submitted", Status.QUEUED)]  # fmt: skip
	assert {r.company for r in rows} == {COMPANY} and [r.company_sequence for r in rows] == [1, 2]
	record = decoded(rows[1])
	assert len(record["document"]["items"]) == 20
	assert str(record["document"]["grand_total"]) == str(invoice.grand_total)
	assert record["event_id"] == rows[1].event_id


def test_a_rollback_drops_the_buffer_and_writes_nothing(streaming):
	handler.handle(exists(submitted_sales_invoice(items=1)), "on_submit")
	frappe.db.rollback()
	assert getattr(frappe.local, handler.BUFFER_ATTR, None) is None
	frappe.db.commit()  # nothing was buffered: the commit writes nothing
	assert log_rows() == []


def test_work_rolled_back_to_a_savepoint_is_not_streamed(streaming):
	handler.handle(exists(gl_entry("gle-kept", "Sales - WP", 0.0, 10.0)), "on_submit")
	frappe.db.savepoint("before_creation_state")
	handler.handle(exists(gl_entry("gle-gone", "Sales - WP", 0.0, 10.0)), "on_submit")
	frappe.db.rollback(save_point="before_creation_state")  # runs no callback
	frappe.db.commit()  # the flush drops the event rolled back to the savepoint
	assert [r.reference_name for r in log_rows()] == ["gle-kept"]


def test_sle_events_carry_the_valuation_written_after_on_submit(streaming):
	sle = exists(stock_ledger_entry(valued=False))
	handler.handle(sle, "on_submit")
	frappe.db.sql(  # update_entries_after writes the valuation with db_update(): no hook
		"UPDATE `tabStock Ledger Entry` SET qty_after_transaction = 40, valuation_rate = 753.086413653,"
		" stock_value = 30123.45654612, stock_value_difference = -1506.172827306 WHERE name = %s",
		(sle.name,),
	)
	frappe.db.commit()  # the flush reads the valuation written after the hook
	document = decoded(log_rows()[0])["document"]
	committed = frappe.db.sql(
		"SELECT qty_after_transaction, valuation_rate, stock_value, stock_value_difference"
		" FROM `tabStock Ledger Entry` WHERE name = %s",
		(sle.name,),
		as_dict=True,
	)[0]
	assert document["qty_after_transaction"] == float(committed.qty_after_transaction)
	for field in ("valuation_rate", "stock_value", "stock_value_difference"):
		assert document[field] == committed[field], field


@pytest.mark.parametrize("flag", ["in_install", "in_migrate", "in_patch", "in_uninstall"])
def test_installs_migrations_and_patches_do_not_stream(streaming, flag):
	setattr(frappe.local.flags, flag, True)
	handler.handle(exists(submitted_sales_invoice(items=1)), "on_submit")
	assert getattr(frappe.local, handler.BUFFER_ATTR, None) is None


def test_data_import_streams_unless_switched_off(streaming):
	frappe.local.flags.in_import = True
	handler.handle(exists(submitted_sales_invoice(items=1)), "on_submit")
	assert len(getattr(frappe.local, handler.BUFFER_ATTR)) == 1
	handler.clear()
	enable(stream_data_import=0)
	handler.handle(submitted_sales_invoice(items=1), "on_submit")
	assert getattr(frappe.local, handler.BUFFER_ATTR, None) is None


def test_disabled_streaming_and_uncatalogued_events_capture_nothing(streaming):
	handler.handle(submitted_sales_invoice(items=1), "on_trash")  # not a catalogued method
	enable(enabled=0)
	handler.handle(submitted_sales_invoice(items=1), "on_submit")
	assert getattr(frappe.local, handler.BUFFER_ATTR, None) is None


def test_the_generic_path_leaves_builtin_doctypes_to_their_own_handler(streaming):
	handler.handle_generic(exists(submitted_sales_invoice(items=1)), "on_submit")
	assert getattr(frappe.local, handler.BUFFER_ATTR, None) is None


def test_a_document_the_builder_refuses_becomes_a_dead_letter_not_an_exception(streaming):
	invoice = exists(submitted_sales_invoice(items=2))
	invoice.grand_total = "twelve"
	handler.handle(invoice, "on_submit")  # must not raise into the user's save
	frappe.db.commit()  # the flush turns the unencodable event into a dead letter
	(row,) = log_rows()
	assert row.status == Status.DEAD
	assert "grand_total" in row.last_error and "twelve" in row.last_error


def test_a_broken_catalog_cache_is_a_dead_letter_not_an_exception(streaming, monkeypatch):
	def broken():
		raise ConnectionError("Redis cache is down")

	monkeypatch.setattr(handler, "get_catalog", broken)
	handler.handle(exists(submitted_sales_invoice(items=1)), "on_submit")
	frappe.db.commit()  # the flush writes the capture failure as a dead letter
	(row,) = log_rows()
	assert (row.status, row.reference_doctype) == (Status.DEAD, "Sales Invoice")
	assert "Redis cache is down" in row.last_error


@for_each_fuzzed_doctype(40, suppress=tuple(HealthCheck))
def test_no_document_makes_a_handler_raise_and_every_event_is_delivered_or_dead_lettered(
	streaming, doctype, data
):
	doc = data.draw(documents(doctype))
	method = data.draw(st.sampled_from([t.method for t in constants.spec_for(doctype).triggers]))
	name = doc.get("name") if isinstance(doc, dict) else getattr(doc, "name", None)
	row_exists = isinstance(name, str) and name and len(name) <= 140
	if row_exists:
		frappe.db.sql(f"DELETE FROM `tab{doctype}` WHERE name = %s", (name,))
		frappe.db.sql(f"INSERT INTO `tab{doctype}` (name) VALUES (%s)", (name,))

	handler.handle(doc, method)
	frappe.db.commit()  # the before_commit flush must not raise either

	rows = frappe.db.sql(f"SELECT * FROM `{EVENT_LOG_TABLE}`", as_dict=True)
	kind = next(t.kind for t in constants.spec_for(doctype).triggers if t.method == method)
	if row_exists and kind != constants.Kind.CHANGE:
		assert len(rows) == 1, "a submit or cancel is never dropped silently: delivered or dead-lettered"
	for row in rows:
		if row.status == Status.DEAD:
			assert row.last_error, "a dead letter says why"
		else:
			assert decoded(row)["doctype"] == doctype
	frappe.db.sql(f"DELETE FROM `{EVENT_LOG_TABLE}`")
	frappe.db.commit()  # a clean log for the next doctype's run


def test_a_backfill_after_live_capture_writes_no_new_event_id_for_stock_rows(streaming):
	"""Issue 17, item 4: ERPNext touches a Stock Ledger Entry again after its on_submit
	(update_entries_after: valuation and `modified`, db_update, no hook). The live event is
	completed from the row at commit, so its id is the one a backfill gives the row."""
	from erpnext_streaming.emitters.codec import get_codec
	from erpnext_streaming.operations import backfill, jobs

	sle = exists(stock_ledger_entry(valued=False))
	handler.handle(sle, "on_submit")
	frappe.db.sql(
		"UPDATE `tabStock Ledger Entry` SET qty_after_transaction = 40, valuation_rate = 753.086413653,"
		" stock_value = 30123.45654612, stock_value_difference = -1506.172827306,"
		" modified = '2024-03-01 10:15:42.000000' WHERE name = %s",
		(sle.name,),
	)
	frappe.db.commit()  # live capture's events are written before the backfill
	live = [r.event_id for r in log_rows()]

	rows, _ = backfill.plan(frappe.db, "Stock Ledger Entry").fetch(frappe.db, None, 100)
	route = catalog.get_catalog().route("Stock Ledger Entry", "on_submit")
	again = jobs.build_records(frappe.db, rows, route, get_codec(), datetime(2024, 3, 2))
	assert [r.status for r in again] == [Status.QUEUED]
	assert [r.event_id for r in again] == live
	assert jobs.existing_event_ids(frappe.db, live) == set(live)


def test_a_deadlock_in_the_flush_fails_the_users_commit_instead_of_reporting_success(streaming):
	"""Issue 17, item 8: MariaDB rolls the deadlock victim's whole transaction back (error
	1213). Another session holds the company's counter row and waits for the invoice's row;
	the flush then waits for the counter: the user's transaction, the lighter one, is the
	victim. The commit must fail: the invoice is gone."""
	import threading

	import pymysql

	handler.handle(exists(gl_entry("gle-first", "Sales - WP", 0.0, 1.0)), "on_submit")
	frappe.db.commit()  # the company's counter row exists from now on
	invoice = exists(submitted_sales_invoice(items=1))
	handler.handle(invoice, "on_submit")

	other = pymysql.connect(autocommit=False, charset="utf8mb4", **frappe.db.params)
	try:
		cursor = other.cursor()
		cursor.execute("CREATE TEMPORARY TABLE heavy (n int) ENGINE=InnoDB")
		cursor.execute("INSERT INTO heavy SELECT seq FROM seq_1_to_2000")  # the heavier transaction
		cursor.execute("SELECT * FROM `tabStreaming Company Sequence` FOR UPDATE")
		waiter = threading.Thread(
			target=lambda: _ignore(cursor.execute, "UPDATE `tabSales Invoice` SET status = 'x'")
		)
		waiter.start()
		_wait_for_lock_wait(frappe.db, other.thread_id())
		with pytest.raises(Exception) as raised:
			frappe.db.commit()  # the flush waits on the other lock and fails: the commit must raise
		waiter.join(30)
	finally:
		other.rollback()
		other.close()
	assert handler.transaction_is_lost(raised.value), raised.value
	frappe.db.rollback()
	assert frappe.db.sql("SELECT name FROM `tabSales Invoice`") == ()


def _ignore(call, *args):
	try:
		call(*args)
	except Exception:
		pass


def _wait_for_lock_wait(db, thread_id, timeout=10.0):
	import time

	deadline = time.monotonic() + timeout
	waiting = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s AND INFO LIKE 'UPDATE%%'"
	while time.monotonic() < deadline:
		if db.sql(waiting, (thread_id,))[0][0]:
			return
		time.sleep(0.05)
	raise AssertionError("the other session never waited for the invoice's row")


def test_errors_that_mean_mariadb_rolled_the_transaction_back_are_told_from_the_others(streaming):
	import pymysql

	def raised_from(cause, error):
		try:
			raise error from cause
		except Exception as e:
			return e

	lost = [
		pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"),
		raised_from(pymysql.err.OperationalError(1213, "Deadlock"), RuntimeError("QueryDeadlockError")),
		pymysql.err.OperationalError(2013, "Lost connection to server during query"),
		pymysql.err.OperationalError(2006, "MySQL server has gone away"),
		pymysql.err.InterfaceError(0, ""),
	]
	assert [handler.transaction_is_lost(e) for e in lost] == [True] * len(lost)
	rollback_on_timeout = frappe.db.sql("SELECT @@innodb_rollback_on_timeout")[0][0]
	timeout = pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")
	assert handler.transaction_is_lost(timeout) is bool(rollback_on_timeout)
	alive = [ValueError("cannot build"), pymysql.err.IntegrityError(1062, "Duplicate entry")]
	assert [handler.transaction_is_lost(e) for e in alive] == [False, False]
