"""The kit's decoder without a broker: encoding detection, writer schemas by fingerprint
(shipped and derived), header-only schemaless, and no Frappe import anywhere in the kit."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import fastavro
import pytest
from test_bundle_format import message_of

from erpnext_streaming.constants import Encoding
from erpnext_streaming.consumer import DecodeError, Decoder, SchemaStore, encoding_of
from erpnext_streaming.schemas.derive import derive_schema

STOCK_ENTRY = [
	("stock_entry_type", "Link", "Stock Entry Type", "Stock Entry Type"),
	("posting_date", "Date", "", "Posting Date"),
	("total_amount", "Currency", "", "Total Amount"),
	("remarks", "Text", "", "Remarks"),
]


def derived_message(encoding: str):
	schema = derive_schema("Stock Entry", STOCK_ENTRY)
	moment = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
	record = {
		"event_id": str(uuid.uuid4()), "event_type": "submitted", "doctype": "Stock Entry", "name": "STE-1",
		"company": "Acme Corp", "site": "s", "docstatus": 1, "event_time": moment, "emitted_at": moment,
		"modified": moment, "schema_name": schema.name, "schema_version": schema.version, "voucher_type": None,
		"voucher_no": None, "voucher_detail_no": None,
		"document": {"name": "STE-1", "docstatus": 1, "stock_entry_type": "Material Transfer",
			"posting_date": moment.date(), "total_amount": None, "remarks": None},
	}  # fmt: skip
	body = io.BytesIO()
	fastavro.schemaless_writer(body, schema.parsed, record)
	row = {
		"name": 1, "creation": moment, "event_id": record["event_id"], "event_type": "submitted",
		"reference_doctype": "Stock Entry", "reference_name": "STE-1", "company": "Acme Corp",
		"event_time": moment, "topic": "erpnext.stock-entry", "message_key": "Acme Corp", "company_sequence": 4,
		"schema_name": schema.name, "schema_version": schema.version, "schema_fingerprint": schema.fingerprint,
		"encoding": encoding, "payload": base64.b64encode(body.getvalue()).decode(),
	}  # fmt: skip
	return schema, record, message_of(row, "s", timezone.utc)


@pytest.mark.parametrize("encoding", [Encoding.SCHEMALESS, Encoding.SINGLE_OBJECT])
def test_a_derived_schema_decodes_once_added_to_the_store(encoding):
	schema, record, message = derived_message(encoding)
	with pytest.raises(DecodeError, match="unknown writer schema"):
		Decoder().decode(message.value, message.headers)
	store = SchemaStore()
	added = store.add(schema.schema)  # e.g. exported from the site as JSON
	assert added.version == schema.version and added.fingerprint == schema.fingerprint
	event = Decoder(store).decode(message.value, message.headers, topic="erpnext.stock-entry")
	assert (event.event_id, event.doctype, event.sequence, event.encoding) == (
		record["event_id"], "Stock Entry", 4, encoding,
	)  # fmt: skip
	assert event.document["stock_entry_type"] == "Material Transfer"


def test_the_encoding_comes_from_content_type_else_from_the_first_bytes():
	assert encoding_of(b"\x00\x00\x00\x00\x01", {"content-type": "application/avro"}) == Encoding.SCHEMALESS
	assert (
		encoding_of(b"\x48abc", {"content-type": "application/avro; encoding=confluent"})
		== Encoding.CONFLUENT
	)
	assert encoding_of(b"\xc3\x01" + bytes(8), {}) == Encoding.SINGLE_OBJECT
	assert encoding_of(b"\x00\x00\x00\x00\x01", {}) == Encoding.CONFLUENT
	assert encoding_of(b"\x48" + b"e" * 36, {}) == Encoding.SCHEMALESS  # an event id's length first


def test_schemaless_finds_the_schema_by_name_and_version_without_a_fingerprint():
	schema, record, message = derived_message(Encoding.SCHEMALESS)
	store = SchemaStore(extra=[schema])
	headers = {"schema_name": schema.name, "schema_version": str(schema.version)}
	assert Decoder(store).decode(message.value, headers).event_id == record["event_id"]
	other = store.by_name("io.erpnext.streaming.GLEntryEvent", 1)
	headers = {"schema_name": other.name, "schema_version": "1"}
	with pytest.raises(DecodeError, match="cannot read the message"):  # the wrong schema for these bytes
		Decoder(store).decode(message.value, headers)
	with pytest.raises(DecodeError, match="needs a schema registry"):
		Decoder().decode(b"\x00\x00\x00\x00\x01rest", {})
	with pytest.raises(DecodeError, match="no value"):
		Decoder().decode(None, {})


def test_the_kit_imports_no_frappe():
	code = (
		"import sys; import erpnext_streaming.consumer, erpnext_streaming.consumer.kpis, "
		"erpnext_streaming.consumer.alerts, erpnext_streaming.delivery.framing; "
		"assert 'frappe' not in sys.modules, sorted(m for m in sys.modules if 'frappe' in m)"
	)
	subprocess.run([sys.executable, "-c", code], check=True)
