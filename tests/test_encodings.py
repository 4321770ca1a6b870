"""Message encodings (issue 7, point 1): Confluent wire format through confluent_kafka's
schema registry (its `mock://` client), Avro single-object encoding, schemaless Avro.

The drainer runs in this process (as in test_delivery_drainer.py) so it shares the
process-wide `mock://` registry with the consumer side of the test; the broker, MariaDB
and Redis are real.
"""

from __future__ import annotations

import dataclasses
import io
import json
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import fastavro
import frappe
import pytest
from confluent_kafka.schema_registry import topic_record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from delivery_support import CODEC, commit_transaction, consume, event, new_topic, rows
from harness.services import free_port
from test_bundle_format import message_of
from test_delivery_drainer import make_drainer, producer_conf
from test_schema_files import crc64_avro_bitwise  # the specification's algorithm, bit by bit

from erpnext_streaming.constants import Encoding, Status
from erpnext_streaming.delivery import framing, messages
from erpnext_streaming.delivery.producer import KafkaProducer
from erpnext_streaming.outbox.records import OutboxRecord
from erpnext_streaming.schemas import SchemaRegistry, get_event_schema
from erpnext_streaming.schemas.registry import PACKAGE_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"
TOY_V1 = SchemaRegistry([PACKAGE_DIR, FIXTURES / "base"]).get("Toy Order", 1)
TOY_V2_COMPATIBLE = SchemaRegistry([PACKAGE_DIR, FIXTURES / "base", FIXTURES / "compatible"]).get(
	"Toy Order", 2
)
TOY_V2_INCOMPATIBLE = SchemaRegistry([PACKAGE_DIR, FIXTURES / "base", FIXTURES / "incompatible"]).get(
	"Toy Order", 2
)


def test_the_independent_crc_matches_fastavros_on_known_schemas():
	for schema in ('"int"', '"null"', '{"type":"record","name":"A","fields":[]}'):
		ours = crc64_avro_bitwise(schema.encode()).to_bytes(8, "little").hex()
		assert ours == fastavro.schema.fingerprint(schema, "CRC-64-AVRO")


@pytest.mark.parametrize(
	"doctype", ["Sales Invoice", "GL Entry", "Stock Ledger Entry", "Work Order", "Job Card"]
)
def test_single_object_encoding_round_trips_with_the_specification_fingerprint(doctype):
	schema = get_event_schema(doctype)
	canonical = fastavro.schema.to_parsing_canonical_form(schema.schema)  # fastavro's, not ours
	expected = crc64_avro_bitwise(canonical.encode("utf-8")).to_bytes(8, "little")
	shipped = ShippedRecord(doctype)
	body = shipped.body()
	row = message_row(Encoding.SINGLE_OBJECT, schema, body)

	message = message_of(row, "site.local", timezone.utc)
	assert message.value[:2] == b"\xc3\x01"
	assert message.value[2:10] == expected
	assert message.value[10:] == body
	headers = dict(message.headers)
	assert headers["content-type"] == b"application/avro; encoding=single-object"
	assert headers["schema_fingerprint"] == expected.hex().encode()
	# a reader that knows only the fingerprint finds the schema and decodes the record
	by_fingerprint = {s.fingerprint: s for s in (get_event_schema(d) for d in ShippedRecord.DOCTYPES)}
	writer = by_fingerprint[message.value[2:10].hex()]
	record = fastavro.schemaless_reader(io.BytesIO(message.value[10:]), writer.parsed, None)
	assert record["event_id"] == shipped.event_id and record["doctype"] == doctype


def test_schemaless_stays_the_stored_bytes_with_application_avro():
	schema = get_event_schema("GL Entry")
	body = ShippedRecord("GL Entry").body()
	message = message_of(message_row(Encoding.SCHEMALESS, schema, body), "s", timezone.utc)
	assert message.value == body and dict(message.headers)["content-type"] == b"application/avro"
	legacy = message_row("", schema, body)  # rows written before the encoding column
	assert message_of(legacy, "s", timezone.utc).value == body


# -- Confluent wire format -----------------------------------------------------------------


def test_confluent_messages_register_the_schema_and_decode_with_avrodeserializer(
	site, mariadb, redis_url, kafka_bootstrap
):
	topic = new_topic(kafka_bootstrap)
	conf = {"url": f"mock://{uuid.uuid4().hex}"}
	ids = framing.SchemaIds.from_config(conf)
	records = [event(f"c{i}", "Acme Corp", topic) for i in range(6)]
	for record in records:
		record.encoding = Encoding.CONFLUENT
	commit_transaction(records)

	drainer = make_drainer(mariadb, redis_url, lambda: KafkaProducer(producer_conf(kafka_bootstrap)))
	drainer.framer = framing.Framer(ids)
	stats = drainer.run()
	drainer.db.close()
	assert stats.sent == 6 and {r.status for r in rows()} == {Status.SENT}

	client = framing.registry_client(conf)  # the same process-wide client the drainer used
	subject = f"{topic}-{CODEC.name}"  # TopicRecordNameStrategy
	assert client.get_subjects() == [subject]
	registered = client.get_latest_version(subject)
	assert registered.version == 1
	assert json.loads(registered.schema.schema_str) == get_event_schema("GL Entry").schema
	assert ids.calls == 1, "the registry is asked once; later rows use the cached id"

	got = consume(kafka_bootstrap, topic, expect=6)
	deserializer = AvroDeserializer(client)
	serializer = AvroSerializer(
		client,
		registered.schema.schema_str,
		conf={"auto.register.schemas": False, "subject.name.strategy": topic_record_subject_name_strategy},
	)
	for message in got:
		assert message.value[0] == 0 and int.from_bytes(message.value[1:5], "big") == registered.schema_id
		assert message.headers["content-type"] == "application/avro; encoding=confluent"
		ctx = SerializationContext(topic, MessageField.VALUE)
		record = deserializer(message.value, ctx)
		assert record["event_id"] == message.headers["ce_id"]
		assert record["document"]["name"] == CODEC.reference(message.value[5:])
		# byte for byte what confluent_kafka's own AvroSerializer writes for the record
		assert serializer(record, ctx) == message.value


def test_an_incompatible_new_version_is_refused_before_anything_of_it_is_published(
	site, mariadb, redis_url, kafka_bootstrap
):
	topic, dead_letters = new_topic(kafka_bootstrap), new_topic(kafka_bootstrap, 1)
	conf = {"url": f"mock://{uuid.uuid4().hex}"}
	ids = framing.SchemaIds.from_config(conf)
	schemas = {1: TOY_V1, 2: TOY_V2_INCOMPATIBLE}
	lookup = lambda doctype, version, fingerprint: schemas[version]  # noqa: E731
	v1 = [toy_record(TOY_V1, f"v1-{i}", topic) for i in range(3)]
	commit_transaction(v1)
	drainer = make_drainer(mariadb, redis_url, lambda: KafkaProducer(producer_conf(kafka_bootstrap)))
	drainer.framer = framing.Framer(ids, lookup)
	assert drainer.run().sent == 3

	# the upgrade: version 2 breaks BACKWARD compatibility with what the registry holds
	v2 = [toy_record(TOY_V2_INCOMPATIBLE, f"v2-{i}", topic) for i in range(4)]
	after = [toy_record(TOY_V1, "v1-after", topic)]  # the same company keeps streaming v1
	commit_transaction(v2 + after)
	drainer = make_drainer(mariadb, redis_url, lambda: KafkaProducer(producer_conf(kafka_bootstrap)))
	drainer.config = dataclasses.replace(drainer.config, dead_letter_topic=dead_letters)
	drainer.framer = framing.Framer(ids, lookup)
	stats = drainer.run()
	drainer.db.close()
	assert (stats.sent, stats.dead) == (1, 4)

	by_ref = {r.event_id: r for r in rows()}
	for record in v2:
		row = by_ref[record.event_id]
		assert row.status == Status.DEAD and row.attempts == 1
		assert "schema registry refused ToyOrderEvent v2" in row.last_error
		assert "document.region" in row.last_error and "requeue" in row.last_error
	subject = f"{topic}-io.erpnext.streaming.ToyOrderEvent"
	client = framing.registry_client(conf)
	assert client.get_versions(subject) == [1], "nothing registered for the refused version"

	published = consume(kafka_bootstrap, topic, expect=4)
	assert sorted(m.headers["ce_id"] for m in published) == sorted(r.event_id for r in v1 + after)
	assert {m.headers["schema_version"] for m in published} == {"1"}
	copies = consume(kafka_bootstrap, dead_letters, expect=4)
	assert sorted(m.headers["ce_id"] for m in copies) == sorted(r.event_id for r in v2)
	for copy in copies:  # the dead-letter copy is the stored schemaless record, still decodable
		assert copy.headers["es_encoding"] == Encoding.CONFLUENT
		assert copy.headers["content-type"] == "application/avro"
		assert "schema registry refused" in copy.headers["es_error"]
		record = fastavro.schemaless_reader(io.BytesIO(copy.value), TOY_V2_INCOMPATIBLE.parsed, None)
		assert record["document"]["region"] == "North"


def test_a_compatible_new_version_is_registered_as_the_next_version():
	conf = {"url": f"mock://{uuid.uuid4().hex}"}
	ids = framing.SchemaIds.from_config(conf)
	first = ids.schema_id("erpnext.toy", TOY_V1)
	second = ids.schema_id("erpnext.toy", TOY_V2_COMPATIBLE)
	client = framing.registry_client(conf)
	subject = "erpnext.toy-io.erpnext.streaming.ToyOrderEvent"
	assert sorted(client.get_versions(subject)) == [1, 2] and first != second
	assert client.get_latest_version(subject).schema_id == second


def test_schema_ids_are_cached_per_process_and_refusals_for_a_while():
	conf = {"url": f"mock://{uuid.uuid4().hex}"}
	first = framing.SchemaIds.from_config(conf)
	schema_id = first.schema_id("erpnext.toy", TOY_V1)
	again = framing.SchemaIds.from_config(conf)  # a new drainer run in the same process
	assert again.schema_id("erpnext.toy", TOY_V1) == schema_id and again.calls == 0

	now = [0.0]
	gate = framing.SchemaIds.from_config(conf, refusal_ttl=60, clock=lambda: now[0])
	for _ in range(3):
		with pytest.raises(framing.FramingError) as refused:
			gate.schema_id("erpnext.toy", TOY_V2_INCOMPATIBLE)
		assert not refused.value.retriable
	assert gate.calls == 1, "one look-up; the refusal is remembered"
	now[0] = 61
	with pytest.raises(framing.FramingError):
		gate.schema_id("erpnext.toy", TOY_V2_INCOMPATIBLE)
	assert gate.calls == 2, "asked again once the refusal expired (an admin may have fixed the subject)"


def test_without_auto_registration_an_unregistered_version_is_refused():
	conf = {"url": f"mock://{uuid.uuid4().hex}"}
	gate = framing.SchemaIds.from_config(conf, auto_register=False)
	with pytest.raises(framing.FramingError, match="not registered under subject"):
		gate.schema_id("erpnext.toy", TOY_V1)
	framing.registry_client(conf).register_schema(
		"erpnext.toy-io.erpnext.streaming.ToyOrderEvent", framing.registry_schema(TOY_V1)
	)
	assert framing.SchemaIds.from_config(conf, auto_register=False).schema_id("erpnext.toy", TOY_V1) >= 1


def test_an_unreachable_registry_is_retriable_and_confluent_needs_a_registry():
	schema = get_event_schema("GL Entry")
	row = message_row(Encoding.CONFLUENT, schema, ShippedRecord("GL Entry").body())
	closed = framing.Framer(framing.SchemaIds.from_config({"url": f"http://127.0.0.1:{free_port()}"}))
	for framer, outcome, says in ((closed, "retriable", "schema registry unavailable"),
		(None, "permanent", "no Schema Registry URL")):  # fmt: skip
		failed: dict = {}
		messages.read(messages.bundle([row], "s", timezone.utc), framer, [], failed)
		assert failed[row["name"]].outcome.value == outcome and says in failed[row["name"]].reason


@pytest.mark.parametrize(
	("strategy", "subject"),
	[
		("TopicRecordNameStrategy", "erpnext.gl-entry-io.erpnext.streaming.GLEntryEvent"),
		("TopicNameStrategy", "erpnext.gl-entry-value"),
		("RecordNameStrategy", "io.erpnext.streaming.GLEntryEvent"),
	],
)
def test_subject_name_strategies(strategy, subject):
	assert framing.subject_name(strategy, "erpnext.gl-entry", "io.erpnext.streaming.GLEntryEvent") == subject


# -- helpers ----------------------------------------------------------------------------------


class ShippedRecord:
	"""A minimal valid record of a shipped event schema (every optional field null)."""

	DOCTYPES = ("Sales Invoice", "GL Entry", "Stock Ledger Entry", "Work Order", "Job Card")

	def __init__(self, doctype: str):
		self.schema = get_event_schema(doctype)
		self.event_id = str(uuid.uuid4())

	def record(self) -> dict:
		moment = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
		document = {}
		for field in self.schema.document_schema["fields"]:
			if field["name"] == "name":
				document["name"] = "DOC-1"
			elif field["name"] == "docstatus":
				document["docstatus"] = 1
			elif "default" in field:
				document[field["name"]] = field["default"]
		return {
			"event_id": self.event_id, "event_type": "submitted", "doctype": self.schema.doctype,
			"name": "DOC-1", "company": "Acme Corp", "site": "s", "docstatus": 1, "event_time": moment,
			"emitted_at": moment, "modified": moment, "schema_name": self.schema.name,
			"schema_version": self.schema.version, "voucher_type": None, "voucher_no": None,
			"voucher_detail_no": None, "document": document,
		}  # fmt: skip

	def body(self) -> bytes:
		out = io.BytesIO()
		fastavro.schemaless_writer(out, self.schema.parsed, self.record())
		return out.getvalue()


def message_row(encoding: str, schema, body: bytes) -> dict:
	import base64

	return {
		"name": 1, "creation": datetime(2026, 11, 23), "event_id": str(uuid.uuid4()), "status": "Queued",
		"event_type": "submitted", "reference_doctype": schema.doctype, "reference_name": "DOC-1",
		"company": "Acme Corp", "event_time": datetime(2026, 11, 23), "topic": "erpnext.test",
		"message_key": "Acme Corp", "company_sequence": 1, "schema_name": schema.name,
		"schema_version": schema.version, "schema_fingerprint": schema.fingerprint, "encoding": encoding,
		"attempts": 0, "payload": base64.b64encode(body).decode(), "last_error": "",
	}  # fmt: skip


def toy_record(schema, reference: str, topic: str) -> OutboxRecord:
	event_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"toy/{topic}/{reference}"))
	moment = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
	document = {
		"name": reference, "docstatus": 1, "customer": "CUST-1", "region": "North", "priority": 1, "qty": 2,
		"notes": "n", "grand_total": Decimal("10.5") if schema.version == 1 else "10.5", "items": [],
	}  # fmt: skip
	out = io.BytesIO()
	fastavro.schemaless_writer(
		out,
		schema.parsed,
		{
			"event_id": event_id, "event_type": "submitted", "doctype": "Toy Order", "name": reference,
			"company": "Acme Corp", "site": frappe.local.site, "docstatus": 1, "event_time": moment,
			"emitted_at": moment, "modified": moment, "schema_name": schema.name,
			"schema_version": schema.version, "voucher_type": None, "voucher_no": None,
			"voucher_detail_no": None, "document": document,
		},
	)  # fmt: skip
	return OutboxRecord(
		event_id=event_id, event_type="submitted", reference_doctype="Toy Order", reference_name=reference,
		company="Acme Corp", event_time=datetime(2026, 11, 23, 9, 30), topic=topic, message_key="Acme Corp",
		schema_name=schema.name, schema_version=schema.version, schema_fingerprint=schema.fingerprint,
		payload=out.getvalue(), encoding=Encoding.CONFLUENT,
	)  # fmt: skip


def test_the_kit_consumes_all_three_encodings_from_one_topic(site, mariadb, redis_url, kafka_bootstrap):
	from confluent_kafka import Producer

	from erpnext_streaming.consumer import Decoder, EventConsumer, Reorderer

	topic = new_topic(kafka_bootstrap)
	conf = {"url": f"mock://{uuid.uuid4().hex}"}
	records = [event(f"k{i}", "Acme Corp", topic) for i in range(9)]
	for record, encoding in zip(records, Encoding.ALL * 3, strict=True):
		record.encoding = encoding
	commit_transaction(records)
	drainer = make_drainer(mariadb, redis_url, lambda: KafkaProducer(producer_conf(kafka_bootstrap)))
	drainer.framer = framing.Framer(framing.SchemaIds.from_config(conf))
	assert drainer.run().sent == 9
	drainer.db.close()
	garbage = Producer({"bootstrap.servers": kafka_bootstrap})
	garbage.produce(topic, key=b"Acme Corp", value=b"\xc3\x01not an event")
	framed = next(m for m in consume(kafka_bootstrap, topic, expect=9) if m.value[:2] == b"\xc3\x01")
	garbage.produce(topic, key=b"Acme Corp", value=framed.value)  # a copy without headers
	garbage.flush(10)

	decoder = Decoder(registry=framing.registry_client(conf))
	with EventConsumer(
		kafka_bootstrap, [topic], decoder=decoder, reorderer=Reorderer(first_sequence=1)
	) as consumer:
		got = []
		for _ in range(100):
			got += consumer.poll(0.5)
			if consumer.stats["messages"] >= 11:
				break
		got += consumer.flush()
	assert [e.name for e in got] == [r.reference_name for r in records], "in company sequence order"
	assert [e.encoding for e in got] == list(Encoding.ALL * 3)
	assert [e.sequence for e in got] == list(range(1, 10))
	assert consumer.stats["decode_errors"] == 1 and "unknown writer schema" in consumer.errors[0][3]
	assert consumer.reorderer.stats["duplicates"] == 1  # the copy, decoded from its bytes alone
