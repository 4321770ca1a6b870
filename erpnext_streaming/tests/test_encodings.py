"""Message encodings on a real bench (twins of tests/test_encoding_settings.py and the
framing parts of tests/test_encodings.py): the settings' rules through the controller,
the Event Log row that records the encoding, and the drainer's framing of such a row
with confluent_kafka's in-memory `mock://` registry.

The framing needs confluent_kafka.schema_registry, whose imports (authlib, httpx ...) come
with the optional `schema-registry` extra: that test is skipped, saying so, on a bench
without it; everything else runs everywhere.

Never commits: every test rolls back.
"""

import dataclasses
import sys
import unittest
import uuid
from unittest.mock import patch
from zoneinfo import ZoneInfo

import frappe
from frappe.tests.utils import FrappeTestCase
from frappe.utils import now_datetime

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE, Encoding
from erpnext_streaming.delivery import framing, jobs, messages
from erpnext_streaming.outbox.records import DELIVERY_COLUMNS
from erpnext_streaming.outbox.write import write
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.settings import StreamingConfig
from erpnext_streaming.tests.delivery_records import outbox_record
from erpnext_streaming.validation import registry_client_missing

REGISTRY_MISSING = registry_client_missing()
needs_the_registry_extra = unittest.skipUnless(
	REGISTRY_MISSING is None,
	"needs the optional schema-registry extra (confluent_kafka.schema_registry does not import: "
	f'{REGISTRY_MISSING}); to run it: bench pip install "erpnext_streaming[schema-registry]"',
)


class TestEncodingSettings(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def assert_rejected(self, says: str, **values):
		doc = frappe.get_single(SETTINGS_DOCTYPE)
		doc.update(values)
		with self.assertRaises(frappe.ValidationError) as caught:
			doc.save()
		self.assertIn(says, str(caught.exception))

	def test_confluent_needs_a_registry_url(self):
		self.assert_rejected("Schema Registry URL is required", message_encoding=Encoding.CONFLUENT)

	def test_registry_url_must_be_http(self):
		self.assert_rejected(
			"is not an http:// or https:// URL",
			message_encoding=Encoding.CONFLUENT,
			schema_registry_url="registry:8081",
		)

	def test_the_confluent_encoding_is_refused_until_the_schema_registry_extra_is_installed(self):
		with patch.dict(sys.modules, {"confluent_kafka.schema_registry": None}):  # as if absent
			self.assert_rejected(
				'bench pip install "erpnext_streaming[schema-registry]"',
				message_encoding=Encoding.CONFLUENT,
				schema_registry_url="https://registry.example.com:8081",
			)

	def test_a_catalog_row_can_override_the_encoding(self):
		doc = frappe.get_single(SETTINGS_DOCTYPE)
		doc.message_encoding = Encoding.SCHEMALESS
		for row in doc.event_catalog:
			row.encoding = Encoding.SINGLE_OBJECT
		doc.save()
		config = StreamingConfig.from_doc(frappe.get_single(SETTINGS_DOCTYPE))
		self.assertTrue(all(config.encoding_for(r) == Encoding.SINGLE_OBJECT for r in config.catalog))


class TestEncodingRows(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def confluent_row(self):
		"""An Event Log row written for the Confluent encoding: (record, row, schema)."""
		schema = get_event_schema("GL Entry")
		record = dataclasses.replace(
			outbox_record(f"enc-{uuid.uuid4().hex[:6]}", "_ES Test A", prefix="encoding-test"),
			encoding=Encoding.CONFLUENT,
			schema_fingerprint=schema.fingerprint,
		)
		write(frappe.db, [record], now_datetime())
		(row,) = frappe.db.sql(
			f"SELECT {', '.join(f'`{c}`' for c in DELIVERY_COLUMNS)} FROM `tab{EVENT_LOG_DOCTYPE}` "
			"WHERE event_id = %s",
			(record.event_id,),
			as_dict=True,
		)
		return record, row, schema

	def test_the_event_log_row_records_the_encoding(self):
		record, row, _ = self.confluent_row()
		self.assertEqual(row.encoding, Encoding.CONFLUENT)
		self.assertEqual(row.schema_fingerprint, record.schema_fingerprint)

	@needs_the_registry_extra
	def test_the_drainer_frames_a_confluent_row_with_the_registry_schema_id(self):
		record, row, schema = self.confluent_row()
		config = StreamingConfig(schema_registry_url=f"mock://{uuid.uuid4().hex}")
		framer = jobs.build_framer(config, None)
		ready, failed = [], {}
		messages.read(messages.bundle([row], "site", ZoneInfo("UTC")), framer, ready, failed)
		self.assertEqual(failed, {})
		(message,) = ready
		client = framing.registry_client(framing.registry_config(config.schema_registry_url))
		subject = f"{row.topic}-{schema.name}"
		self.assertEqual(message.value[0], 0)
		self.assertEqual(
			int.from_bytes(message.value[1:5], "big"), client.get_latest_version(subject).schema_id
		)
		self.assertEqual(message.value[5:], record.payload)
		self.assertEqual(message.headers["content-type"], "application/avro; encoding=confluent")


class TestStoredSchemas(FrappeTestCase):
	"""A derived schema is stored by fingerprint when first used, and the drainer finds an
	older stored version when the doctype's meta changed since (twin of
	tests/test_stored_schemas.py; the meta change is a stored variant, no DDL)."""

	def tearDown(self):
		frappe.db.rollback()

	def test_a_derived_schema_is_stored_and_an_older_version_is_found(self):
		import copy

		from erpnext_streaming.emitters.codec import derive_from_meta
		from erpnext_streaming.schemas import stored
		from erpnext_streaming.schemas.registry import EventSchema

		current = derive_from_meta("ToDo")
		self.assertEqual(stored.load(frappe.db, current.fingerprint).schema, current.schema)
		older_schema = copy.deepcopy(current.schema)
		document = next(f for f in older_schema["fields"] if f["name"] == "document")
		document["type"]["fields"] = document["type"]["fields"][:-1]  # a field added since
		older = EventSchema.build(older_schema, "ToDo", current.version + 1, "test")
		stored.store(frappe.db, older, now_datetime())
		found = jobs.writer_schema("ToDo", older.version, older.fingerprint)
		self.assertEqual((found.fingerprint, found.version), (older.fingerprint, older.version))
