"""The encoding setting, its per-row override, and the row that records it.

Message Encoding (Streaming Settings) and a catalog row's Encoding decide how the drainer
frames an event; capture writes the choice into the Event Log row and never contacts the
registry (issue 7, point 1 and its design hints).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from fixtures import erpnext

from erpnext_streaming import validation as v
from erpnext_streaming.catalog import Catalog
from erpnext_streaming.constants import Encoding
from erpnext_streaming.emitters import capture
from erpnext_streaming.emitters.codec import AvroCodec
from erpnext_streaming.settings import CatalogRow, StreamingConfig

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def rows(*encodings: str) -> list[CatalogRow]:
	doctypes = ("Sales Invoice", "GL Entry", "Stock Ledger Entry")
	return [
		CatalogRow(d, encoding=e, idx=i) for i, (d, e) in enumerate(zip(doctypes, encodings, strict=False), 1)
	]


def check(encoding=Encoding.SCHEMALESS, catalog=(), url="", user="", password=False, ca="", strategy=None):
	v.validate_encodings(
		encoding, list(catalog), url, user, password, ca, strategy or "TopicRecordNameStrategy"
	)


def test_settings_read_the_encoding_fields_with_schemaless_as_default():
	assert StreamingConfig.from_doc({}).message_encoding == Encoding.SCHEMALESS
	config = StreamingConfig.from_doc(
		{
			"message_encoding": Encoding.CONFLUENT,
			"schema_registry_url": " https://sr:8081 ",
			"schema_registry_username": "KEY",
			"schema_registry_auto_register": 0,
			"subject_name_strategy": "TopicNameStrategy",
			"event_catalog": [{"document_type": "GL Entry", "encoding": Encoding.SINGLE_OBJECT}],
		}
	)
	assert (config.schema_registry_url, config.schema_registry_username) == ("https://sr:8081", "KEY")
	assert (
		config.schema_registry_auto_register is False and config.subject_name_strategy == "TopicNameStrategy"
	)
	assert config.catalog[0].encoding == Encoding.SINGLE_OBJECT
	assert not hasattr(config, "schema_registry_password"), "no secret in the settings snapshot"


def test_each_route_takes_its_rows_override_or_the_default():
	config = StreamingConfig(
		enabled=True,
		message_encoding=Encoding.SINGLE_OBJECT,
		catalog=(CatalogRow("GL Entry"), CatalogRow("Sales Invoice", encoding=Encoding.CONFLUENT)),
	)
	catalog = Catalog.from_config(config)
	assert catalog.route("GL Entry", "on_submit").encoding == Encoding.SINGLE_OBJECT
	assert catalog.route("Sales Invoice", "on_submit").encoding == Encoding.CONFLUENT
	assert catalog.route("Sales Invoice", "on_change").encoding == Encoding.CONFLUENT


def test_capture_records_the_routes_encoding_in_the_outbox_row(site):
	import frappe

	config = StreamingConfig(
		enabled=True, catalog=(CatalogRow("Sales Invoice", encoding=Encoding.CONFLUENT),)
	)
	route = Catalog.from_config(config).route("Sales Invoice", "on_submit")
	codec = AvroCodec("site.local")
	buffer = capture.Buffer()
	doc = erpnext.submitted_sales_invoice(items=2)
	frappe.db.sql("INSERT INTO `tabSales Invoice` (name, modified) VALUES (%s, %s)", (doc.name, doc.modified))
	capture.capture(buffer, doc, route, datetime(2024, 3, 1, 10, 15, 43), codec)
	(record,) = capture.flush(buffer, frappe.db, codec)
	assert record.encoding == Encoding.CONFLUENT
	assert record.payload[:1] != b"\x00", "capture stores schemaless Avro; the drainer frames it"
	dead = codec.dead_letter(buffer.events[0], "boom")
	assert dead.encoding == Encoding.CONFLUENT


@pytest.mark.parametrize(
	"kwargs",
	[
		{},
		{"encoding": Encoding.SINGLE_OBJECT},
		{"encoding": Encoding.CONFLUENT, "url": "https://sr.example.com:8081"},
		{"encoding": Encoding.CONFLUENT, "url": "http://a:8081,http://b:8081", "user": "u", "password": True},
		{"catalog": rows(Encoding.CONFLUENT), "url": "https://sr:8081", "ca": PEM},
		{"catalog": rows("", Encoding.SINGLE_OBJECT), "strategy": "RecordNameStrategy"},
	],
)
def test_valid_encoding_settings_pass(kwargs):
	check(**kwargs)


@pytest.mark.parametrize(
	"kwargs, field, says",
	[
		({"encoding": "JSON"}, "message_encoding", "Message Encoding must be one of"),
		({"catalog": rows("Protobuf")}, "event_catalog", "row 1 (Sales Invoice): Encoding must be empty"),
		({"encoding": Encoding.CONFLUENT}, "schema_registry_url", "Schema Registry URL is required"),
		({"catalog": rows("", Encoding.CONFLUENT)}, "schema_registry_url", "is required"),
		(
			{"encoding": Encoding.CONFLUENT, "url": "mock://x"},
			"schema_registry_url",
			"'mock://x' is not an http:// or https:// URL",
		),
		({"url": "sr:8081"}, "schema_registry_url", "not an http"),
		(
			{"url": "https://sr", "password": True},
			"schema_registry_username",
			"Username / API Key is required",
		),
		({"url": "https://sr", "user": "key"}, "schema_registry_password", "API Secret is required"),
		({"url": "https://sr", "ca": "not a pem"}, "schema_registry_ca_certificate", "paste a PEM"),
		({"url": "http://sr", "ca": PEM}, "schema_registry_ca_certificate", "only used with an https"),
		({"strategy": "SubjectPerDay"}, "subject_name_strategy", "must be one of"),
	],
)
def test_invalid_encoding_settings_name_the_field(kwargs, field, says):
	with pytest.raises(v.InvalidSetting) as caught:
		check(**kwargs)
	assert caught.value.fieldname == field
	assert says in caught.value.message, caught.value.message


def test_a_disabled_row_does_not_need_the_registry():
	check(catalog=[CatalogRow("GL Entry", enabled=False, encoding=Encoding.CONFLUENT)])


def test_the_confluent_encoding_is_refused_until_the_schema_registry_extra_is_installed(monkeypatch):
	import sys

	monkeypatch.setitem(sys.modules, "confluent_kafka.schema_registry", None)  # as if not installed
	with pytest.raises(v.InvalidSetting) as caught:
		check(encoding=Encoding.CONFLUENT, url="https://sr.example.com:8081")
	assert caught.value.fieldname == "message_encoding"
	assert 'bench pip install "erpnext_streaming[schema-registry]"' in caught.value.message
	check(encoding=Encoding.SINGLE_OBJECT)  # the other encodings need no extra
