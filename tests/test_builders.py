"""Builders: in-memory ERPNext documents -> Avro records that encode and decode back exactly."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import frappe
import pytest
from fixtures.erpnext import (
	COMPANY,
	SLE_VALUATION_ROW,
	WORK_ORDER_PROGRESS,
	FakeDoc,
	cancelled_sales_invoice,
	exact,
	gl_entry,
	job_card_transitions,
	reversal_of,
	stock_ledger_entry,
	submitted_sales_invoice,
	work_order,
)

from erpnext_streaming.constants import BUILTIN_SPECS
from erpnext_streaming.emitters.builders import BuildError, get_builder
from erpnext_streaming.emitters.envelope import build_envelope
from erpnext_streaming.schemas import default_registry, get_event_schema
from erpnext_streaming.schemas.serializer import AvroEventSerializer
from erpnext_streaming.tests.utils import decode

UTC = timezone.utc
EMITTED = datetime(2024, 3, 1, 10, 15, 42, 999999)


def capture(doc, event_type: str, time_zone=None) -> dict:
	schema = get_event_schema(doc.doctype)
	record = build_envelope(
		doc, doc.doctype, event_type, "erp.example.com", EMITTED, schema, time_zone=time_zone
	)
	record["document"] = get_builder(doc.doctype)(doc)
	return record


def round_trip(record: dict) -> dict:
	schema = get_event_schema(record["doctype"])
	payload = AvroEventSerializer(schema)(record, None)
	decoded = decode(payload, schema)
	assert decoded == record
	return decoded


def test_each_built_in_doctype_has_a_builder():
	doctypes = {s.doctype for s in BUILTIN_SPECS}
	assert set(default_registry().shipped_doctypes()) == doctypes
	assert all(callable(get_builder(doctype)) for doctype in doctypes)
	doc = gl_entry("gle-1", "Debtors - WP", 10.5, 0.0)
	assert get_builder("GL Entry")(doc) == get_builder("GL Entry", 1)(doc)


def test_submitted_sales_invoice_with_20_items_round_trips_with_exact_amounts():
	doc = submitted_sales_invoice(items=20)
	decoded = round_trip(capture(doc, "submitted"))
	body = decoded["document"]
	assert len(body["items"]) == 20
	for row, src in zip(body["items"], doc.items, strict=True):
		assert row["name"] == src.name and row["idx"] == src.idx
		for field in ("rate", "amount", "base_net_amount", "price_list_rate", "incoming_rate"):
			assert row[field] == exact(getattr(src, field)), field
			assert row[field].as_tuple().exponent == -9
		assert row["qty"] == src.qty and isinstance(row["qty"], float)
		assert row["item_code"] == src.item_code
		assert row["batch_no"] == ""  # an empty Data field stays an empty string
		assert row["brand"] is None
	assert body["items"][0]["rate"] == Decimal("1244.567891235")
	assert body["grand_total"] == exact(doc.grand_total)
	assert body["total_commission"] == Decimal("987654321.123456789")  # nine places, exactly
	assert body["conversion_rate"] == 1.0
	assert body["posting_date"] == date(2024, 3, 1)
	assert body["due_date"] == date(2024, 3, 31)
	assert body["posting_time"] == time(10, 15, 3, 250)
	assert body["update_stock"] is True and body["is_return"] is False
	assert "description" not in body["items"][0] and "taxes" not in body
	assert decoded["event_time"] == datetime(2024, 3, 1, 10, 15, 3, 250, tzinfo=UTC)
	assert decoded["modified"] == datetime(2024, 3, 1, 10, 15, 42, 123456, tzinfo=UTC)
	assert decoded["company"] == COMPANY
	assert decoded["schema_name"] == "io.erpnext.streaming.SalesInvoiceEvent"
	assert decoded["schema_version"] == 1
	assert decoded["voucher_type"] is None


def test_amounts_keep_their_decimal_digits_never_float_rounding():
	doc = FakeDoc("GL Entry", name="x", docstatus=1, modified="2024-03-01 10:00:00.000000")
	cases = {
		0.1: Decimal("0.1"),
		0.123456789: Decimal("0.123456789"),
		1234.567891234: Decimal("1234.567891234"),
		0.1 + 0.2: Decimal("0.3"),  # 0.30000000000000004 at scale 9
		-0.000000001: Decimal("-1E-9"),
		999999999999.999: Decimal("999999999999.999"),
		Decimal("999999999999.999999999"): Decimal("999999999999.999999999"),
		"42.0000000005": Decimal("42.000000001"),  # ROUND_HALF_UP, as MariaDB stores it
		7: Decimal(7),
	}
	for value, expected in cases.items():
		doc.debit = value
		body = round_trip(capture(doc, "posted"))["document"]
		assert body["debit"] == expected, value
		assert str(body["debit"]) == str(expected.quantize(Decimal("1E-9")))


def test_an_amount_beyond_decimal_21_9_is_a_build_error():
	doc = FakeDoc("GL Entry", name="x", docstatus=1, debit=1e12)
	with pytest.raises(BuildError, match=r"^debit: 1000000000000.0 does not fit decimal\(21,9\)$"):
		get_builder("GL Entry")(doc)


def test_cancelled_invoice_and_its_reversal_ledger_rows():
	invoice = cancelled_sales_invoice()
	decoded = round_trip(capture(invoice, "cancelled"))
	assert decoded["docstatus"] == 2 and decoded["document"]["status"] == "Cancelled"
	assert decoded["event_type"] == "cancelled"

	grand = invoice.grand_total
	originals = [gl_entry("gle-1", "Debtors - WP", grand, 0.0), gl_entry("gle-2", "Sales - WP", 0.0, grand)]
	for n, original in enumerate(originals):
		reversal = reversal_of(original, f"gle-r{n}", "2024-03-02 09:00:00.000000")
		before = round_trip(capture(original, "posted"))
		after = round_trip(capture(reversal, "posted"))
		assert after["document"]["debit"] == before["document"]["credit"]
		assert after["document"]["credit"] == before["document"]["debit"]
		assert (
			after["document"]["debit_in_transaction_currency"]
			== before["document"]["credit_in_transaction_currency"]
		)
		assert after["document"]["is_cancelled"] is True and before["document"]["is_cancelled"] is False
		# joined on the voucher, not the temporary row name
		assert (after["voucher_type"], after["voucher_no"]) == ("Sales Invoice", invoice.name)
		assert after["event_id"] != before["event_id"]

	sle_original = stock_ledger_entry(valued=True)
	sle_reversal = reversal_of(sle_original, "9d1c0b7e55", "2024-03-02 09:00:00.000000")
	body = round_trip(capture(sle_reversal, "posted"))["document"]
	assert body["actual_qty"] == 2.0 and body["is_cancelled"] is True
	assert body["stock_value_difference"] == Decimal("1506.172827306")


def test_stock_ledger_entry_before_and_after_valuation_completion():
	at_submit = capture(stock_ledger_entry(valued=False), "posted")
	body = at_submit["document"]
	assert body["valuation_rate"] is None and body["stock_queue"] is None
	assert body["qty_after_transaction"] == 0.0 and body["stock_value"] == Decimal(0)
	round_trip(at_submit)

	# before commit the capture core completes the snapshot from the database and builds it
	snapshot = {**vars(stock_ledger_entry(valued=False)), **SLE_VALUATION_ROW}
	completed = dict(at_submit, document=get_builder("Stock Ledger Entry")(snapshot))
	final = round_trip(completed)["document"]
	assert final == capture(stock_ledger_entry(valued=True), "posted")["document"]
	assert final["valuation_rate"] == Decimal("753.086413653")
	assert final["stock_value_difference"] == Decimal("-1506.172827306")
	assert final["qty_after_transaction"] == 40.0  # Decimal("40.000000000") from SQL, a double
	assert at_submit["event_time"] == datetime(2024, 3, 1, 10, 15, 3, 250, tzinfo=UTC)  # posting_datetime


def test_work_order_progress_through_repeated_db_set():
	doc = work_order()
	first = round_trip(capture(doc, "submitted"))
	assert [op["operation"] for op in first["document"]["operations"]] == ["Cutting", "Lamination"]
	assert first["document"]["required_items"][0]["amount"] == exact(round(120.5 * 312.123456789, 9))
	assert first["document"]["planned_start_date"] == datetime(2024, 3, 4, 8, 0)
	seen = [first]
	for modified, values in WORK_ORDER_PROGRESS:
		doc.db_set(values, modified)
		seen.append(round_trip(capture(doc, "progressed")))
	assert [e["document"]["status"] for e in seen] == [
		"Not Started",
		"In Process",
		"In Process",
		"In Process",
		"Completed",
	]
	assert [e["document"]["produced_qty"] for e in seen] == [0.0, 0.0, 4.0, 9.5, 9.5]
	assert seen[-1]["document"]["actual_end_date"] == datetime(2024, 3, 4, 10, 45)
	assert len({e["event_id"] for e in seen}) == len(seen)  # every state its own id
	assert round_trip(capture(doc, "progressed"))["event_id"] == seen[-1]["event_id"]  # same state, same id


def test_job_card_status_transitions_with_time_logs():
	events = [
		round_trip(capture(card, "submitted" if card.docstatus else "status_changed"))
		for card in job_card_transitions()
	]
	assert [e["document"]["status"] for e in events] == [
		"Open",
		"Work In Progress",
		"On Hold",
		"Completed",
		"Completed",
	]
	assert [len(e["document"]["time_logs"]) for e in events] == [0, 1, 1, 2, 2]
	running = events[1]["document"]
	assert running["job_started"] is True and running["time_logs"][0]["to_time"] is None
	assert running["started_time"] == datetime(2024, 3, 4, 8, 2, 10)
	done = events[3]["document"]
	assert done["total_completed_qty"] == 10.0
	assert [log["employee"] for log in done["time_logs"]] == ["HR-EMP-00007", "HR-EMP-00009"]
	assert done["hour_rate"] == Decimal("850.25")
	assert events[4]["docstatus"] == 1 and events[4]["event_type"] == "submitted"
	assert (done["work_order"], done["operation_id"]) == ("MFG-WO-2024-00005", "wo-op-1")


def as_dict(doc: FakeDoc, factory):
	values = {}
	for key, value in vars(doc).items():
		values[key] = [as_dict(row, factory) for row in value] if isinstance(value, list) else value
	return factory(**values)


@pytest.mark.parametrize(
	"factory", [frappe._dict, dict, SimpleNamespace], ids=["frappe._dict", "dict", "object"]
)
def test_builders_read_frappe_dicts_plain_dicts_and_plain_objects_alike(factory):
	for doc in (
		submitted_sales_invoice(items=3),
		work_order(),
		job_card_transitions()[3],
		stock_ledger_entry(True),
	):
		expected = get_builder(doc.doctype)(doc)
		assert get_builder(doc.doctype)(as_dict(doc, factory)) == expected


def test_datetimes_are_wall_clock_and_envelope_instants_follow_the_site_time_zone():
	doc = submitted_sales_invoice(items=1)
	record = round_trip(capture(doc, "submitted", time_zone=ZoneInfo("Asia/Kolkata")))
	assert record["event_time"] == datetime(2024, 3, 1, 4, 45, 3, 250, tzinfo=UTC)
	assert record["modified"] == datetime(2024, 3, 1, 4, 45, 42, 123456, tzinfo=UTC)
	assert record["emitted_at"] == datetime(2024, 3, 1, 4, 45, 42, 999999, tzinfo=UTC)
	assert record["document"]["posting_time"] == time(10, 15, 3, 250)  # the document keeps wall clock


def test_time_and_date_values_in_every_shape_frappe_produces():
	build = get_builder("Sales Invoice")
	base = {"name": "x", "docstatus": 1}
	for posting_time in ("10:15:03.000250", "10:15:03.00025", time(10, 15, 3, 250)):
		assert build({**base, "posting_time": posting_time})["posting_time"] == time(10, 15, 3, 250)
	assert build({**base, "posting_time": "9:05"})["posting_time"] == time(9, 5)
	for posting_date in ("2024-03-01", date(2024, 3, 1), datetime(2024, 3, 1, 23, 59), "2024-03-01 23:59:59"):
		assert build({**base, "posting_date": posting_date})["posting_date"] == date(2024, 3, 1)
	assert build({**base, "posting_date": ""})["posting_date"] is None
	wo = get_builder("Work Order")
	for value in ("2024-03-04 08:00:00", "2024-03-04T08:00:00.000000", "2024-03-04 08:00", date(2024, 3, 4)):
		expected = datetime(2024, 3, 4, 8) if value != date(2024, 3, 4) else datetime(2024, 3, 4)
		assert wo({**base, "planned_start_date": value})["planned_start_date"] == expected


def test_a_bad_value_names_its_field_and_row():
	doc = submitted_sales_invoice(items=5)
	doc.items[3].rate = "twelve"
	with pytest.raises(BuildError) as raised:
		get_builder("Sales Invoice")(doc)
	assert str(raised.value) == "items[3].rate: 'twelve' is not an amount"
	assert raised.value.field == "items[3].rate"
	doc = work_order()
	doc.operations = "Cutting"
	with pytest.raises(BuildError, match=r"^operations: is not a child table \(a list of rows\) but str$"):
		get_builder("Work Order")(doc)
	with pytest.raises(BuildError, match=r"^name: is required \(text\) but is empty$"):
		get_builder("GL Entry")({"docstatus": 1})
