"""Permissions and secrets of the operations layer on a real bench (twin of
tests/test_operations_security.py): every whitelisted method refuses Guest and a user
without System Manager; the SASL password is in no status, health, connection check,
export or error text; masking on a real invoice."""

import hmac
import json
import tempfile
from pathlib import Path

import frappe
from frappe.tests.utils import FrappeTestCase

from erpnext_streaming import api, catalog
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE
from erpnext_streaming.emitters import handler
from erpnext_streaming.emitters.codec import mask_key_from
from erpnext_streaming.operations import site as ops
from erpnext_streaming.outbox.records import decode_payload
from erpnext_streaming.schemas import get_event_schema
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.delivery_records import outbox_record
from erpnext_streaming.tests.utils import acting_as, decode, ensure_user

SETTINGS_MODULE = "erpnext_streaming.erpnext_streaming.doctype.streaming_settings.streaming_settings"
BACKFILL_MODULE = "erpnext_streaming.erpnext_streaming.doctype.streaming_backfill.streaming_backfill"
CALLS = {
	"erpnext_streaming.api.health": lambda fn: fn(check_broker=0),
	"erpnext_streaming.api.requeue": lambda fn: fn(filters={"status": "Dead"}),
	"erpnext_streaming.api.oldest_pending_age": lambda fn: fn(),
	"erpnext_streaming.api.status_count": lambda fn: fn(filters={"status": "Dead"}),
	f"{BACKFILL_MODULE}.count": lambda fn: fn("Sales Invoice"),
	f"{BACKFILL_MODULE}.start": lambda fn: fn("Sales Invoice"),
	f"{BACKFILL_MODULE}.resume": lambda fn: fn(1),
	f"{BACKFILL_MODULE}.cancel": lambda fn: fn(1),
	"erpnext_streaming.api.events_per_minute": lambda fn: fn(chart_name="Streaming Events per Minute"),
	f"{SETTINGS_MODULE}.test_connection": lambda fn: fn(),
}


class TestWhitelistedMethodPermissions(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def test_guest_and_non_managers_are_refused_everywhere(self):
		user = ensure_user("streaming-stock-user@example.com", ("Stock User", "Accounts User"))
		for path, call in CALLS.items():
			fn = frappe.get_attr(path)
			self.assertIn(fn, frappe.whitelisted, path)
			for who in ("Guest", user):
				with (
					self.subTest(path=path, user=who),
					acting_as(who),
					self.assertRaises(frappe.PermissionError),
				):
					call(fn)

	def test_a_system_manager_is_answered(self):
		user = ensure_user("streaming-ops@example.com", ("System Manager",))
		with acting_as(user):
			self.assertIn("status", api.health(check_broker=0))
			self.assertIsInstance(api.oldest_pending_age(), str)
			self.assertIn("datasets", api.events_per_minute())

	def test_health_is_reachable_by_get(self):
		self.assertIn("GET", frappe.allowed_http_methods_for_whitelisted_func[api.health])
		self.assertEqual(frappe.allowed_http_methods_for_whitelisted_func[api.requeue], ["POST"])


class TestSecretsStayInside(FrappeTestCase):
	def setUp(self):
		self.password = f"pw-{frappe.generate_hash(length=16)}"
		self.registry_secret = f"registry-{frappe.generate_hash(length=16)}"
		settings = frappe.get_single(SETTINGS_DOCTYPE)
		settings.update(
			{
				"enabled": 1,
				"bootstrap_servers": "127.0.0.1:1",
				"security_protocol": "SASL_PLAINTEXT",
				"sasl_mechanism": "SCRAM-SHA-512",
				"sasl_username": "svc-streaming",
				"sasl_password": self.password,
			}
		)
		if settings.meta.has_field("schema_registry_password"):  # the Schema Registry's API secret
			settings.update(
				{
					"schema_registry_url": "https://registry.invalid:8081",
					"schema_registry_username": "registry-key",
					"schema_registry_password": self.registry_secret,
				}
			)
		settings.set("event_catalog", catalog.default_catalog_rows())
		settings.save()
		frappe.db.delete(EVENT_LOG_DOCTYPE)
		from erpnext_streaming.outbox.write import write

		write(frappe.db, [outbox_record("leaky", "_ES Sec Co", status="Dead")], frappe.utils.now_datetime())
		name = frappe.db.get_value(EVENT_LOG_DOCTYPE, {"event_id": "delivery-test-leaky"})
		frappe.db.set_value(
			EVENT_LOG_DOCTYPE, name, "last_error", f"auth failed: {self.password} {self.registry_secret}"
		)

	def tearDown(self):
		frappe.db.rollback()
		catalog.clear_cache()

	def test_status_health_connection_check_and_export_never_show_the_password(self):
		texts = []
		text, health = ops.status_text(check_broker=True)
		texts.append(text)
		self.assertEqual(health, "down")
		self.assertIn("auth failed: *** ", text)
		self.assertIn(self.password, ops.secrets())
		texts.append(json.dumps(ops.status_json(check_broker=False), default=str))
		texts.append(json.dumps(api.health(check_broker=1), default=str))
		texts.append(json.dumps(frappe.get_attr(f"{SETTINGS_MODULE}.test_connection")()))
		texts.append(json.dumps(ops.check_connection(timeout=1)))
		with tempfile.TemporaryDirectory() as folder:
			written = ops.export_schemas(folder)
			texts += [Path(p).read_text() for p in written]
		for text in texts:
			self.assertNotIn(self.password, text)
			self.assertNotIn(self.registry_secret, text)


class TestMaskingOnARealInvoice(FrappeTestCase):
	@classmethod
	def setUpClass(cls):
		super().setUpClass()
		erpnext_records.ensure()  # our company, fiscal year, warehouse, customer and item

	def tearDown(self):
		handler.clear()
		frappe.db.rollback()
		catalog.clear_cache()

	def submitted_invoice_record(self, mode):
		settings = frappe.get_single(SETTINGS_DOCTYPE)
		settings.update({"enabled": 1, "bootstrap_servers": "127.0.0.1:9092", "mask_mode": mode})
		rows = catalog.default_catalog_rows()
		for row in rows:
			if row["document_type"] == "Sales Invoice":
				row["masked_fields"] = "customer_name, items.item_name"
		settings.set("event_catalog", rows)
		settings.save()
		handler.clear()
		if hasattr(frappe.local, "_erpnext_streaming_codec"):
			delattr(frappe.local, "_erpnext_streaming_codec")
		last = frappe.db.sql(f"SELECT COALESCE(MAX(name), 0) FROM `tab{EVENT_LOG_DOCTYPE}`")[0][0]
		invoice = erpnext_records.sales_invoice(qty=2, rate=100)
		handler.flush()
		row = frappe.db.sql(
			f"SELECT payload FROM `tab{EVENT_LOG_DOCTYPE}` WHERE name > %s AND reference_name = %s "
			"AND event_type = 'submitted'",
			(last, invoice.name),
			as_dict=True,
		)[0]
		return invoice, decode(decode_payload(row.payload), get_event_schema("Sales Invoice"))

	def test_keyed_hash_and_drop_mask_the_listed_fields_only(self):
		from frappe.utils.password import get_encryption_key

		key = mask_key_from(get_encryption_key())
		invoice, record = self.submitted_invoice_record("Keyed hash")
		expected = hmac.digest(key, invoice.customer_name.encode(), "sha256").hex()
		self.assertEqual(record["document"]["customer_name"], expected)
		self.assertEqual(
			record["document"]["items"][0]["item_name"],
			hmac.digest(key, invoice.items[0].item_name.encode(), "sha256").hex(),
		)
		self.assertEqual(record["document"]["customer"], invoice.customer)  # not listed: clear
		self.assertEqual(record["document"]["items"][0]["item_code"], invoice.items[0].item_code)

		invoice, record = self.submitted_invoice_record("Drop")
		self.assertIsNone(record["document"]["customer_name"])
		self.assertIsNone(record["document"]["items"][0]["item_name"])
		self.assertEqual(record["document"]["customer"], invoice.customer)
