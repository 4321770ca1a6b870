"""Streaming Settings on a real bench: validation messages, catalog seeding, cache, permissions.

Twins of tests/test_settings_validation.py and tests/test_catalog.py (pytest, stand-in).
Run: bench --site SITE run-tests --app erpnext_streaming --module
erpnext_streaming.tests.test_streaming_settings
"""

import frappe
from frappe.tests.utils import FrappeTestCase

from erpnext_streaming import catalog, install
from erpnext_streaming.constants import BUILTIN_BY_DOCTYPE, SETTINGS_DOCTYPE
from erpnext_streaming.tests.utils import acting_as, ensure_user

SETTINGS_MODULE = "erpnext_streaming.erpnext_streaming.doctype.streaming_settings.streaming_settings"


def fresh_settings(**values):
	doc = frappe.get_single(SETTINGS_DOCTYPE)
	doc.update(values)
	return doc


class TestStreamingSettingsValidation(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def assert_rejected(self, says: str, **values):
		with self.assertRaises(frappe.ValidationError) as caught:
			fresh_settings(**values).save()
		self.assertIn(says, str(caught.exception))

	def test_enabled_needs_bootstrap_servers(self):
		self.assert_rejected("Bootstrap Servers is required", enabled=1, bootstrap_servers="")

	def test_bootstrap_list_must_be_host_port(self):
		self.assert_rejected("Bootstrap Servers: 'kafka' is not host:port", bootstrap_servers="kafka")

	def test_dead_letter_topic_follows_kafka_rules(self):
		self.assert_rejected("Dead Letter Topic: topic name 'dead letters'", dead_letter_topic="dead letters")

	def test_topic_prefix_follows_kafka_rules(self):
		self.assert_rejected("Topic Prefix: 'erp/next'", topic_prefix="erp/next")

	def test_sasl_needs_mechanism_username_and_password(self):
		self.assert_rejected("SASL Mechanism", security_protocol="SASL_SSL", sasl_mechanism="")
		self.assert_rejected(
			"SASL Username is required",
			security_protocol="SASL_SSL",
			sasl_mechanism="PLAIN",
			sasl_username="",
		)

	def test_unknown_and_owned_producer_properties_are_refused(self):
		doc = fresh_settings()
		doc.append("producer_properties", {"property": "lingerms", "value": "5"})
		with self.assertRaises(frappe.ValidationError) as caught:
			doc.save()
		self.assertIn("'lingerms' is not a librdkafka producer property", str(caught.exception))
		doc = fresh_settings()
		doc.set("producer_properties", [{"property": "bootstrap.servers", "value": "x:1"}])
		with self.assertRaises(frappe.ValidationError) as caught:
			doc.save()
		self.assertIn("Bootstrap Servers field", str(caught.exception))

	def test_producer_properties_that_would_break_a_guarantee_are_refused_naming_them(self):
		for key, value, says in (
			("enable.idempotence", "false", "must stay true"),
			("acks", "1", "must stay all"),
			("partitioner", "consistent_random", "must be murmur2_random or murmur2"),
			("max.in.flight.requests.per.connection", "10", "must be 1 to 5"),
			("message.timeout.ms", "0", "must be at least 5000"),
		):
			doc = fresh_settings()
			doc.set("producer_properties", [{"property": key, "value": value}])
			with self.assertRaises(frappe.ValidationError) as caught:
				doc.save()
			self.assertIn(f"'{key}' = '{value}' {says}", str(caught.exception))

	def test_secret_producer_properties_are_refused(self):
		doc = fresh_settings()
		doc.set("producer_properties", [{"property": "ssl.key.password", "value": "hunter2"}])
		with self.assertRaises(frappe.ValidationError) as caught:
			doc.save()
		self.assertIn("'ssl.key.password' holds a secret", str(caught.exception))
		self.assertNotIn("hunter2", str(caught.exception))

	def test_a_damaged_ca_certificate_is_refused_with_librdkafkas_reason(self):
		self.assert_rejected(
			"CA Certificate: ",
			security_protocol="SSL",
			ssl_ca_certificate="-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n",
		)

	def test_sasl_password_is_stored_encrypted_and_not_in_the_document(self):
		password = f"pw-{frappe.generate_hash(length=12)}"
		doc = fresh_settings(
			bootstrap_servers="kafka:9093",
			security_protocol="SASL_SSL",
			sasl_mechanism="SCRAM-SHA-512",
			sasl_username="svc",
			sasl_password=password,
		)
		doc.save()
		self.assertEqual(doc.get_password("sasl_password"), password)
		singles = frappe.db.sql("select field, value from tabSingles where doctype=%s", SETTINGS_DOCTYPE)
		self.assertNotIn(password, frappe.as_json(singles))
		self.assertNotIn(password, frappe.as_json(frappe.get_single(SETTINGS_DOCTYPE).as_dict()))

	def test_client_certificate_and_key_both_or_neither_and_the_key_is_stored_encrypted(self):
		"""Twin of tests/test_security_config.py (client certificate rules)."""
		certificate, key = self_signed_client_pair()
		tls = {"bootstrap_servers": "kafka:9093", "security_protocol": "SSL"}
		self.assert_rejected("Client Key is required", ssl_certificate=certificate, ssl_key="", **tls)
		self.assert_rejected("Client Certificate is required", ssl_certificate="", ssl_key=key, **tls)
		self.assert_rejected(
			"only used with SSL or SASL_SSL",
			bootstrap_servers="kafka:9092", security_protocol="PLAINTEXT", ssl_certificate=certificate,
			ssl_key=key,
		)  # fmt: skip
		_, other_key = self_signed_client_pair()
		with self.assertRaises(frappe.ValidationError) as caught:
			fresh_settings(ssl_certificate=certificate, ssl_key=other_key, **tls).save()
		self.assertIn("key values mismatch", str(caught.exception))
		self.assertNotIn(other_key, str(caught.exception))
		# pasted into the one-line Password input: line breaks gone; saved as valid PEM
		doc = fresh_settings(ssl_certificate=certificate, ssl_key=key.replace("\n", ""), **tls)
		doc.save()
		self.assertEqual(doc.get_password("ssl_key"), key)
		singles = frappe.db.sql("select field, value from tabSingles where doctype=%s", SETTINGS_DOCTYPE)
		self.assertNotIn(key.splitlines()[1], frappe.as_json(singles))
		fresh_settings(**tls).save()  # unchanged key (asterisks in the form) still validates

	def test_catalog_refuses_duplicates_and_non_submittable_doctypes(self):
		doc = fresh_settings()
		doc.set("event_catalog", [])
		doc.append("event_catalog", {"document_type": "ToDo", "enabled": 1, "on_submit": 1})
		with self.assertRaises(frappe.ValidationError) as caught:
			doc.save()
		self.assertIn("ToDo is not submittable", str(caught.exception))

	def test_valid_settings_save_and_describe_each_catalog_row(self):
		doc = fresh_settings(bootstrap_servers="kafka-1:9092,kafka-2:9092", topic_prefix="erp")
		doc.set("producer_properties", [{"property": "linger.ms", "value": "5"}])
		doc.save()
		for row in doc.event_catalog:
			self.assertIn("Topic: ", row.description)


class TestCatalogSeedingAndCache(FrappeTestCase):
	def tearDown(self):
		frappe.db.rollback()

	def test_builtin_doctypes_present_on_the_site_are_seeded_once(self):
		doc = fresh_settings()
		doc.set("event_catalog", [])
		doc.seeded_doctypes = ""
		doc.save()
		install.seed_catalog()
		installed = [d for d in BUILTIN_BY_DOCTYPE if frappe.db.exists("DocType", d)]
		rows = [r.document_type for r in frappe.get_single(SETTINGS_DOCTYPE).event_catalog]
		self.assertEqual(rows, installed)
		# an admin deletes a row: the next migrate does not add it back
		doc = frappe.get_single(SETTINGS_DOCTYPE)
		doc.set("event_catalog", doc.event_catalog[1:])
		doc.save()
		install.seed_catalog()
		self.assertEqual(
			[r.document_type for r in frappe.get_single(SETTINGS_DOCTYPE).event_catalog], installed[1:]
		)

	def test_saving_settings_clears_the_cached_catalog(self):
		doc = fresh_settings(enabled=1, bootstrap_servers="kafka:9092", topic_prefix="before")
		doc.set("event_catalog", [{"document_type": "Sales Invoice", "enabled": 1, "on_submit": 1}])
		doc.save()
		self.assertEqual(
			catalog.get_catalog().route("Sales Invoice", "on_submit").topic, "before.sales-invoice"
		)
		doc.topic_prefix = "after"
		doc.save()  # on_update clears the cache
		self.assertEqual(
			catalog.get_catalog().route("Sales Invoice", "on_submit").topic, "after.sales-invoice"
		)


class TestTestConnectionPermissions(FrappeTestCase):
	def test_guest_and_non_managers_are_refused(self):
		test_connection = frappe.get_attr(f"{SETTINGS_MODULE}.test_connection")
		user = ensure_user("streaming-accounts-user@example.com", ("Accounts User",))
		for who in ("Guest", user):
			with acting_as(who), self.assertRaises(frappe.PermissionError):
				test_connection()

	def test_system_manager_gets_an_answer_not_an_exception(self):
		frappe.set_user("Administrator")
		result = frappe.get_attr(f"{SETTINGS_MODULE}.test_connection")()
		self.assertIn("ok", result)


def self_signed_client_pair() -> tuple[str, str]:
	"""(certificate PEM, unencrypted PKCS#8 key PEM) of a throwaway client certificate."""
	import datetime

	from cryptography import x509
	from cryptography.hazmat.primitives import hashes, serialization
	from cryptography.hazmat.primitives.asymmetric import ec
	from cryptography.x509.oid import NameOID

	key = ec.generate_private_key(ec.SECP256R1())
	name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "erp-streaming")])
	now = datetime.datetime.now(datetime.timezone.utc)
	certificate = (
		x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
		.serial_number(x509.random_serial_number()).not_valid_before(now)
		.not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256())
	)  # fmt: skip
	key_pem = key.private_bytes(
		serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
	)
	return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()
