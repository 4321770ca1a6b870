"""Capture rules: change detection, per-transaction coalescing, SLE completion, savepoints.

The codec here records what the capture core asks of it (the Avro codec has its own
round-trip tests); the database is the real MariaDB with ERPNext's columns.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

import frappe
import pytest

from erpnext_streaming import catalog
from erpnext_streaming.constants import Status
from erpnext_streaming.emitters import capture
from erpnext_streaming.outbox.records import OutboxRecord
from erpnext_streaming.settings import StreamingConfig

T0 = datetime(2026, 11, 23, 9, 0, 0, 123456)
CATALOG = catalog.Catalog.from_config(
	StreamingConfig.from_doc({"enabled": 1, "event_catalog": catalog.default_catalog_rows()})
)


class Doc(dict):
	"""A document as doc_events handlers see it: attributes, .get(), the state before save."""

	def __init__(self, doctype: str, before: dict | None = None, **values):
		super().__init__(doctype=doctype, **{"docstatus": 1, **values})
		self._before = Doc(doctype, **before) if before is not None else None

	def __getattr__(self, key):
		return self.get(key)

	def get_doc_before_save(self):
		return self._before

	def as_dict(self):
		return dict(self)


class RecordingCodec:
	def __init__(self, fail_on: set[str] = frozenset(), tables: dict | None = None):
		self.fail_on = fail_on
		self._tables = tables or {}

	def tables(self, route):
		return self._tables.get(route.doctype, [])

	def build(self, doc, route):
		if doc.get("name") in self.fail_on:
			raise ValueError(f"cannot build {doc.get('name')}")
		return {k: v for k, v in doc.items() if not k.startswith("_")}

	def envelope(self, doc, route, emitted_at):
		return {"event_type": route.event_type, "emitted_at": emitted_at}

	def encode(self, event):
		body = json.dumps({"envelope": event.envelope, "document": event.document}, default=str).encode()
		return self._record(event, body, Status.QUEUED, "")

	def dead_letter(self, event, reason):
		return self._record(event, b"{}", Status.DEAD, reason)

	def _record(self, event, payload, status, error):
		return OutboxRecord(
			event_id=f"{event.doctype}:{event.name}:{event.route.event_type}",
			event_type=event.route.event_type, reference_doctype=event.doctype, reference_name=event.name,
			company=event.company, event_time=None, topic=event.route.topic, message_key=event.company,
			schema_name="test", schema_version=1, schema_fingerprint="", payload=payload, status=status,
			last_error=error,
		)  # fmt: skip


def take(buffer, doc, method, codec=None, now=T0):
	return capture.capture(buffer, doc, CATALOG.route(doc["doctype"], method), now, codec or RecordingCodec())


def kinds(events):
	return [(e.doctype, e.name, e.route.event_type, e.state) for e in events]


# -- change detection and coalescing (no database) ------------------------------------------


def test_on_change_right_after_submit_carries_no_new_state_and_is_skipped():
	buffer = capture.Buffer()
	invoice = Doc("Sales Invoice", name="SINV-1", company="A", status="Unpaid", outstanding_amount=100.0)
	take(buffer, invoice, "on_submit")
	assert take(buffer, invoice, "on_change") is None
	assert kinds(buffer.events) == [("Sales Invoice", "SINV-1", "submitted", ("Unpaid", 100.0))]


def test_a_status_change_before_the_submit_of_the_same_invoice_is_folded_into_the_submit():
	"""Seen on a real bench: submitting an invoice with stock db_sets its status from another
	copy of the document before the invoice's own on_submit handler runs."""
	buffer = capture.Buffer()
	state = dict(name="SINV-1", company="A", status="Unpaid", outstanding_amount=100.0)
	take(
		buffer,
		Doc("Sales Invoice", before={"status": "Draft", "outstanding_amount": 0}, **state),
		"on_change",
	)
	take(buffer, Doc("Stock Ledger Entry", name="SLE-1", company="A"), "on_submit")
	take(buffer, Doc("Sales Invoice", **state), "on_submit")
	kept = capture.coalesce(buffer.events)
	assert [(e.doctype, e.route.event_type) for e in kept] == [
		("Stock Ledger Entry", "posted"), ("Sales Invoice", "submitted")]  # fmt: skip


def test_a_change_event_of_a_document_the_stream_never_emitted_is_emitted():
	"""Without an emitted state to compare with, the current state is news to consumers."""
	buffer = capture.Buffer()
	paid = Doc("Sales Invoice", before={"status": "Paid", "outstanding_amount": 0}, name="SINV-1",
		company="A", status="Paid", outstanding_amount=0)  # fmt: skip
	assert take(buffer, paid, "on_change").route.event_type == "status_changed"
	assert take(buffer, paid, "on_change") is None  # the same state again: nothing new


def test_sales_invoice_status_events_keep_only_the_last_state_of_the_transaction():
	buffer = capture.Buffer()
	for status, outstanding in (("Partly Paid", 60.0), ("Partly Paid", 20.0), ("Paid", 0.0)):
		doc = Doc("Sales Invoice", name="SINV-1", company="A", status=status, outstanding_amount=outstanding)
		take(buffer, doc, "on_change")
	assert [e.state for e in capture.coalesce(buffer.events)] == [("Paid", 0.0)]


def test_work_order_progress_keeps_the_last_state_of_each_status_so_no_transition_is_lost():
	buffer = capture.Buffer()
	states = [("In Process", 2), ("In Process", 5), ("Completed", 10), ("Completed", 10), ("Stopped", 10)]
	for status, produced in states:
		doc = Doc("Work Order", name="WO-1", company="A", status=status, produced_qty=produced,
			material_transferred_for_manufacturing=10, process_loss_qty=0)  # fmt: skip
		take(buffer, doc, "on_change")
	kept = capture.coalesce(buffer.events)
	assert [(e.state[0], e.state[1]) for e in kept] == [
		("In Process", 5.0),
		("Completed", 10.0),
		("Stopped", 10.0),
	]
	assert {e.route.event_type for e in kept} == {"progressed"}


def test_job_card_emits_only_when_status_or_completed_qty_changed():
	buffer = capture.Buffer()
	buffer.known_state[("Job Card", "JC-1")] = ("Open", 0.0)  # what the stream last emitted
	jc = dict(name="JC-1", company="A", work_order="WO-1", operation="Cutting")
	take(buffer, Doc("Job Card", status="Open", total_completed_qty=0, **jc), "on_update")
	take(buffer, Doc("Job Card", status="Work In Progress", total_completed_qty=0, **jc), "on_update")
	take(buffer, Doc("Job Card", status="Work In Progress", total_completed_qty=0, **jc), "on_change")  # same
	take(buffer, Doc("Job Card", status="Completed", total_completed_qty=5, **jc), "on_update")
	assert [e.state for e in capture.coalesce(buffer.events)] == [
		("Work In Progress", 0.0),
		("Completed", 5.0),
	]


def test_coalescing_keeps_ledger_rows_before_their_voucher_in_hook_order():
	buffer = capture.Buffer()
	take(buffer, Doc("Stock Ledger Entry", name="SLE-1", company="A"), "on_submit")
	take(buffer, Doc("GL Entry", name="GLE-1", company="A"), "on_submit")
	take(buffer, Doc("GL Entry", name="GLE-2", company="A"), "on_submit")
	take(
		buffer,
		Doc("Sales Invoice", name="SINV-1", company="A", status="Unpaid", outstanding_amount=1),
		"on_submit",
	)
	names = [e.name for e in capture.coalesce(buffer.events)]
	assert names == ["SLE-1", "GLE-1", "GLE-2", "SINV-1"]


def test_a_failed_capture_is_buffered_as_a_dead_letter_with_its_reason():
	buffer = capture.Buffer()
	doc = Doc("Sales Invoice", name="SINV-9", company="A", status="Unpaid", outstanding_amount=1)
	with pytest.raises(ValueError):
		take(buffer, doc, "on_submit", codec=RecordingCodec(fail_on={"SINV-9"}))
	event = capture.capture_failed(
		buffer, doc, CATALOG.route("Sales Invoice", "on_submit"), "on_submit", "boom"
	)
	assert (event.failure, event.company, buffer.events) == ("boom", "A", [event])


# -- flush against the database -----------------------------------------------------------------


class CountingDb:
	def __init__(self, db):
		self.db, self.queries = db, []

	def sql(self, query, values=(), as_dict=False):
		self.queries.append(query)
		return self.db.sql(query, values, as_dict=as_dict)


def insert(doctype: str, **values):
	columns = ", ".join(f"`{k}`" for k in values)
	frappe.db.sql(
		f"INSERT INTO `tab{doctype}` ({columns}) VALUES ({', '.join(['%s'] * len(values))})",
		list(values.values()),
	)


@pytest.mark.integration
def test_stock_ledger_events_carry_the_valuation_as_committed_with_one_query(site):
	buffer = capture.Buffer()
	for i in range(3):
		# on_submit: the valuation is not computed yet
		sle = dict(name=f"SLE-{i}", company="A", item_code="ITEM", warehouse="Stores - A", actual_qty=-2.0,
			modified=T0, qty_after_transaction=0, valuation_rate=0, stock_value=0, stock_value_difference=0)  # fmt: skip
		insert("Stock Ledger Entry", **sle)
		take(buffer, Doc("Stock Ledger Entry", **sle), "on_submit")
		# update_entries_after then writes the valuation with db_update (no hook)
		frappe.db.sql(
			"UPDATE `tabStock Ledger Entry` SET qty_after_transaction = %s, valuation_rate = %s, stock_value = %s,"
			" stock_value_difference = %s, outgoing_rate = %s WHERE name = %s",
			(98 - 2 * i, Decimal("12.345678901"), Decimal("1209.876532298") - i, Decimal("-24.691357802"),
			 Decimal("12.345678901"), f"SLE-{i}"),
		)  # fmt: skip
	db = CountingDb(frappe.db)
	records = capture.flush(buffer, db, RecordingCodec())
	assert len(db.queries) == 1 and "`tabStock Ledger Entry`" in db.queries[0]
	committed = {
		r["name"]: r
		for r in frappe.db.sql(
			"SELECT name, qty_after_transaction, valuation_rate, stock_value, stock_value_difference, outgoing_rate"
			" FROM `tabStock Ledger Entry`",
			as_dict=True,
		)
	}
	for record in records:
		document = json.loads(record.payload)["document"]
		row = committed[record.reference_name]
		for field in (
			"qty_after_transaction",
			"valuation_rate",
			"stock_value",
			"stock_value_difference",
			"outgoing_rate",
		):
			assert Decimal(document[field]) == row[field], field


@pytest.mark.integration
def test_events_of_work_rolled_back_to_a_savepoint_are_dropped(site):
	buffer = capture.Buffer()
	insert("GL Entry", name="GLE-kept", company="A", modified=T0)
	take(buffer, Doc("GL Entry", name="GLE-kept", company="A", modified=T0), "on_submit")
	insert("Sales Invoice", name="SINV-1", company="A", status="Draft", modified=T0)
	frappe.db.savepoint("before_creation_state")  # as erpnext/utilities/bulk_transaction.py does
	insert("GL Entry", name="GLE-gone", company="A", modified=T0)
	take(buffer, Doc("GL Entry", name="GLE-gone", company="A", modified=T0), "on_submit")
	later = T0 + timedelta(seconds=1)
	frappe.db.sql(
		"UPDATE `tabSales Invoice` SET status = 'Unpaid', modified = %s WHERE name = 'SINV-1'", (later,)
	)
	take(buffer, Doc("Sales Invoice", name="SINV-1", company="A", status="Unpaid", outstanding_amount=5,
		modified=later), "on_submit")  # fmt: skip
	frappe.db.rollback(save_point="before_creation_state")

	records = capture.flush(buffer, frappe.db, RecordingCodec())
	assert [r.reference_name for r in records] == ["GLE-kept"]


@pytest.mark.integration
def test_a_document_that_cannot_be_built_at_flush_becomes_a_dead_letter_and_the_rest_go_on(site):
	buffer = capture.Buffer()
	for name in ("SLE-ok", "SLE-bad"):
		insert("Stock Ledger Entry", name=name, company="A", modified=T0)
		take(buffer, Doc("Stock Ledger Entry", name=name, company="A", modified=T0), "on_submit")
	errors = []
	records = capture.flush(
		buffer, frappe.db, RecordingCodec(fail_on={"SLE-bad"}), on_error=lambda e, x: errors.append(x)
	)
	assert [(r.reference_name, r.status) for r in records] == [
		("SLE-ok", Status.QUEUED),
		("SLE-bad", Status.DEAD),
	]
	assert records[1].last_error == "ValueError: cannot build SLE-bad"
	assert len(errors) == 1


def pay(name: str, outstanding: float, status: str) -> list[tuple]:
	"""One committed transaction of ERPNext's update_voucher_outstanding (erpnext/accounts/utils.py):
	`frappe.db.set_value` of outstanding_amount, then `set_status(update=True)`, whose db_set
	loads the "before" copy from the row (already holding the new amount) and fires on_change."""
	frappe.db.sql(
		"UPDATE `tabSales Invoice` SET outstanding_amount = %s WHERE name = %s", (outstanding, name)
	)
	before = frappe.db.sql("SELECT status, outstanding_amount FROM `tabSales Invoice` WHERE name = %s",
		(name,), as_dict=True)[0]  # fmt: skip
	frappe.db.sql("UPDATE `tabSales Invoice` SET status = %s WHERE name = %s", (status, name))
	buffer = capture.Buffer()
	buffer.db = CountingDb(frappe.db)  # the handler's buffer reads the emitted states from the database
	invoice = Doc("Sales Invoice", before=dict(before), name=name, company="A", status=status,
		outstanding_amount=outstanding, modified=T0, docstatus=1)  # fmt: skip
	take(buffer, invoice, "on_change")
	take(buffer, invoice, "on_change")  # the same state again in the transaction: no query
	assert [q.split(" WHERE ")[1] for q in buffer.db.queries] == ["`name` = %s"]  # one primary-key read
	records = capture.flush(buffer, frappe.db, RecordingCodec())
	frappe.db.commit()  # the flush's emitted-state upsert is what the next capture compares with
	return [(r.event_type, float(json.loads(r.payload)["document"]["outstanding_amount"])) for r in records]


@pytest.mark.integration
def test_every_change_of_outstanding_amount_is_emitted_also_when_the_status_stays(site):
	"""Issue 17 item 1: invoice 100, payment 30, second payment 30, cancel of the second."""
	insert("Sales Invoice", name="SINV-1", company="A", status="Unpaid", outstanding_amount=100,
		docstatus=1, modified=T0)  # fmt: skip
	buffer = capture.Buffer()
	buffer.db = frappe.db
	take(buffer, Doc("Sales Invoice", name="SINV-1", company="A", status="Unpaid", outstanding_amount=100.0,
		modified=T0, docstatus=1), "on_submit")  # fmt: skip
	assert [r.event_type for r in capture.flush(buffer, frappe.db, RecordingCodec())] == ["submitted"]
	frappe.db.commit()  # the submitted state is emitted: the next capture compares with it

	assert pay("SINV-1", 70.0, "Partly Paid") == [("status_changed", 70.0)]
	assert pay("SINV-1", 40.0, "Partly Paid") == [("status_changed", 40.0)]  # the status stays
	assert pay("SINV-1", 70.0, "Partly Paid") == [("status_changed", 70.0)]  # that payment cancelled
	assert pay("SINV-1", 70.0, "Partly Paid") == []  # a save that changes nothing emits nothing


def emit(name: str, method: str, status: str, outstanding: float) -> list[str]:
	"""One committed transaction with one hook of an invoice, through the flush."""
	buffer = capture.Buffer()
	buffer.db = frappe.db
	take(buffer, Doc("Sales Invoice", name=name, company="A", status=status, outstanding_amount=outstanding,
		modified=T0, docstatus=1), method)  # fmt: skip
	records = capture.flush(buffer, frappe.db, RecordingCodec())
	frappe.db.commit()  # the emitted state stands for the next payment's capture
	return [r.event_type for r in records]


@pytest.mark.integration
def test_invoices_made_overdue_without_a_hook_are_found_against_the_last_emitted_state(site):
	"""Issue 17 item 1: erpnext's daily update_invoice_status sets Overdue with a bulk UPDATE."""
	for name in ("SINV-1", "SINV-2", "SINV-3"):
		insert("Sales Invoice", name=name, company="A", status="Unpaid", outstanding_amount=100, docstatus=1,
			modified=T0)  # fmt: skip
		assert emit(name, "on_submit", "Unpaid", 100.0) == ["submitted"]
	insert("Sales Invoice", name="SINV-4", company="A", status="Overdue", outstanding_amount=5, docstatus=1,
		modified=T0)  # submitted before streaming was enabled: never emitted  # fmt: skip
	frappe.db.sql("UPDATE `tabSales Invoice` SET status = 'Overdue' WHERE name IN ('SINV-1', 'SINV-2')")
	frappe.db.commit()  # ERPNext's bulk UPDATE (update_invoice_status) committed before the daily job runs
	assert capture.changed_without_hook(frappe.db) == ["SINV-1", "SINV-2", "SINV-4"]

	assert emit("SINV-1", "on_change", "Overdue", 100.0) == ["status_changed"]  # what the daily job does
	assert capture.changed_without_hook(frappe.db) == ["SINV-2", "SINV-4"]


# -- issue 17: drafts, the committed state, savepoints with a reused name ------------------


def test_drafts_emit_no_change_events_except_job_cards_whose_status_moves_before_submit():
	"""Inserting a draft Sales Invoice or Work Order is not a business event (issue 17,
	item 2); a Job Card goes Open -> Work In Progress -> Completed as a draft (job_card.py
	set_status in validate, before submit), so its spec streams drafts."""
	buffer = capture.Buffer()
	invoice = Doc(
		"Sales Invoice", name="SINV-1", company="A", docstatus=0, status="Draft", outstanding_amount=100
	)
	assert take(buffer, invoice, "on_change") is None
	order = Doc("Work Order", name="WO-1", company="A", docstatus=0, status="Draft", produced_qty=0,
		material_transferred_for_manufacturing=0, process_loss_qty=0)  # fmt: skip
	assert take(buffer, order, "on_change") is None
	card = Doc(
		"Job Card", name="JC-1", company="A", docstatus=0, status="Work In Progress", total_completed_qty=0
	)
	assert take(buffer, card, "on_update").route.event_type == "status_changed"
	assert [e.doctype for e in buffer.events] == ["Job Card"]


def document(record):
	return json.loads(record.payload)["document"]


@pytest.mark.integration
def test_the_last_event_of_a_document_carries_what_erpnext_wrote_after_its_hook(site):
	"""Issue 17, item 3: WorkOrder.update_status db_sets the status (on_change fires: captured),
	then update_required_items db_sets each required item's consumed_qty (no hook). The last
	event of the order carries the row as committed; the earlier status run keeps its state."""
	buffer = capture.Buffer()
	codec = RecordingCodec(tables={"Work Order": [("required_items", "Work Order Item")]})
	order = dict(name="WO-1", company="A", docstatus=1, creation=T0, qty=2, produced_qty=0,
		material_transferred_for_manufacturing=2, process_loss_qty=0)  # fmt: skip
	insert("Work Order", status="In Process", modified=T0, **order)
	insert("Work Order Item", name="woi-1", parent="WO-1", parenttype="Work Order", parentfield="required_items",
		idx=1, item_code="RM", required_qty=2, consumed_qty=0)  # fmt: skip
	items = [dict(name="woi-1", idx=1, item_code="RM", required_qty=2.0, consumed_qty=0.0)]
	take(
		buffer,
		Doc("Work Order", status="In Process", modified=T0, required_items=items, **order),
		"on_change",
		codec,
	)
	later = T0 + timedelta(seconds=1)
	done = {**order, "produced_qty": 2}
	frappe.db.sql(
		"UPDATE `tabWork Order` SET status = 'Completed', produced_qty = 2, modified = %s", (later,)
	)
	take(
		buffer,
		Doc("Work Order", status="Completed", modified=later, required_items=items, **done),
		"on_change",
		codec,
	)
	frappe.db.sql("UPDATE `tabWork Order Item` SET consumed_qty = 2")  # db_set(update_modified=False)

	first, last = (document(r) for r in capture.flush(buffer, frappe.db, codec))
	assert (first["status"], first["required_items"][0]["consumed_qty"]) == ("In Process", 0.0)
	assert (last["status"], float(last["produced_qty"])) == ("Completed", 2)
	assert float(last["required_items"][0]["consumed_qty"]) == 2
	assert last["required_items"][0]["item_code"] == "RM"


@pytest.mark.integration
def test_a_document_rolled_back_to_a_savepoint_leaves_no_event_when_its_name_is_given_again(site):
	"""Issue 17, item 5: bulk_transaction.py submits each document after a savepoint and rolls
	back to it on failure; the naming series rolls back too, so the next invoice gets the
	same name, a later `modified`, and another `creation`."""
	buffer = capture.Buffer()
	frappe.db.savepoint("bulk")
	phantom = dict(name="SINV-1", company="A", docstatus=1, customer="Phantom", status="Unpaid",
		outstanding_amount=5, creation=T0, modified=T0)  # fmt: skip
	insert("Sales Invoice", **phantom)
	take(buffer, Doc("Sales Invoice", **phantom), "on_submit")
	frappe.db.rollback(save_point="bulk")
	later = T0 + timedelta(seconds=1)
	real = {**phantom, "customer": "Real", "creation": later, "modified": later}
	insert("Sales Invoice", **real)
	take(buffer, Doc("Sales Invoice", **real), "on_submit")

	records = capture.flush(buffer, frappe.db, RecordingCodec())
	assert [(r.reference_name, document(r)["customer"]) for r in records] == [("SINV-1", "Real")]
