# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

import frappe
from frappe import _
from frappe.model.document import Document

from erpnext_streaming import catalog, validation
from erpnext_streaming.constants import default_topic
from erpnext_streaming.kafka_config import librdkafka_check
from erpnext_streaming.settings import CatalogRow


class StreamingSettings(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		from erpnext_streaming.erpnext_streaming.doctype.streaming_event_catalog.streaming_event_catalog import (
			StreamingEventCatalog,
		)
		from erpnext_streaming.erpnext_streaming.doctype.streaming_producer_property.streaming_producer_property import (
			StreamingProducerProperty,
		)

		backoff_base_seconds: DF.Int
		backoff_cap_seconds: DF.Int
		batch_size: DF.Int
		bootstrap_servers: DF.Data | None
		client_id: DF.Data | None
		dead_letter_topic: DF.Data | None
		enabled: DF.Check
		event_catalog: DF.Table[StreamingEventCatalog]
		mask_mode: DF.Literal["Keyed hash", "Drop"]
		max_attempts: DF.Int
		message_encoding: DF.Literal["Schemaless Avro", "Single-object Avro", "Confluent Schema Registry"]
		producer_properties: DF.Table[StreamingProducerProperty]
		sasl_mechanism: DF.Literal["", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
		sasl_password: DF.Password | None
		sasl_username: DF.Data | None
		schema_registry_auto_register: DF.Check
		schema_registry_ca_certificate: DF.Code | None
		schema_registry_password: DF.Password | None
		schema_registry_url: DF.Data | None
		schema_registry_username: DF.Data | None
		security_protocol: DF.Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
		seeded_doctypes: DF.SmallText | None
		ssl_ca_certificate: DF.Code | None
		ssl_certificate: DF.Code | None
		ssl_key: DF.Password | None
		stream_data_import: DF.Check
		subject_name_strategy: DF.Literal[
			"TopicRecordNameStrategy", "TopicNameStrategy", "RecordNameStrategy"
		]
		topic_prefix: DF.Data | None
	# end: auto-generated types

	def validate(self):
		protocol = self.security_protocol or "PLAINTEXT"
		key = self.client_key()
		if key and not _dummy(self.ssl_key or ""):
			self.ssl_key = key = validation.normalize_pem(key)  # before Frappe encrypts it
		properties = [((r.property or "").strip(), (r.value or "").strip()) for r in self.producer_properties]
		check = self._check
		check(validation.validate_bootstrap_servers, (self.bootstrap_servers or "").strip(), self.enabled)
		check(
			validation.validate_security,
			protocol,
			self.sasl_mechanism or "",
			self.sasl_username or "",
			self.has_password("sasl_password"),
			self.ssl_ca_certificate or "",
			librdkafka_check,
		)
		check(
			validation.validate_client_certificate,
			protocol,
			(self.ssl_certificate or "").strip(),
			key,
			librdkafka_check,
		)
		check(validation.validate_producer_properties, properties, librdkafka_check)
		self.validate_catalog_and_topics()

	def validate_catalog_and_topics(self):
		prefix = (self.topic_prefix or "").strip()
		rows = [CatalogRow.from_row(r) for r in self.event_catalog]
		check = self._check
		check(validation.validate_topic_prefix, prefix)
		dead_letter_topic = (self.dead_letter_topic or "").strip()
		check(validation.validate_topic_name, dead_letter_topic, "dead_letter_topic", _("Dead Letter Topic"))
		check(
			validation.validate_limits, {f: self.get(f) for f in validation.LIMITS if self.get(f) is not None}
		)
		check(validation.validate_mask_mode, self.mask_mode or "Keyed hash")
		check(validation.validate_catalog, rows, FrappeDoctypeFacts())
		check(
			validation.validate_encodings,
			self.message_encoding or "Schemaless Avro",
			rows,
			(self.schema_registry_url or "").strip(),
			(self.schema_registry_username or "").strip(),
			self.has_password("schema_registry_password"),
			self.schema_registry_ca_certificate or "",
			self.subject_name_strategy or "TopicRecordNameStrategy",
		)
		for row in self.event_catalog:
			if row.document_type:
				topic = row.topic or default_topic(prefix, row.document_type)
				row.description = catalog.describe(row.document_type, topic)

	def on_update(self):
		catalog.clear_cache()
		frappe.db.after_commit.add(_tell_the_drainer)

	def client_key(self) -> str:
		"""The Client Key as saved now: the value typed in, or the stored one when the form
		shows it as asterisks; "" when cleared."""
		value = self.ssl_key or ""
		if value and _dummy(value):
			return self.get_password("ssl_key", raise_exception=False) or ""
		return value

	def has_password(self, fieldname: str) -> bool:
		"""Typed in now, or stored before (the form shows a stored one as asterisks)."""
		return bool(self.get(fieldname)) or bool(self.get_password(fieldname, raise_exception=False))

	@staticmethod
	def _check(rule, *args):
		try:
			rule(*args)
		except validation.InvalidSetting as e:
			frappe.throw(e.message, title=_("Invalid Streaming Settings"))


def _dummy(value: str) -> bool:
	"""The asterisks the form shows for a stored password (Frappe's `is_dummy_password`)."""
	return set(value) == {"*"}


class FrappeDoctypeFacts:
	"""`validation.DoctypeFacts` answered from Frappe's meta."""

	def exists(self, doctype: str) -> bool:
		return bool(frappe.db.exists("DocType", doctype))

	def is_submittable(self, doctype: str) -> bool:
		return bool(frappe.get_meta(doctype).is_submittable)

	def maskable_fields(self, doctype: str, schema_version: int) -> frozenset[str]:
		from erpnext_streaming.emitters.builders import maskable_fields, maskable_fields_of
		from erpnext_streaming.emitters.codec import derive_from_meta
		from erpnext_streaming.schemas import SchemaError, shipped_doctypes

		try:
			if doctype in shipped_doctypes():
				return maskable_fields(doctype, schema_version)
			return maskable_fields_of(derive_from_meta(doctype))
		except SchemaError:
			return frozenset()


@frappe.whitelist()
def test_connection() -> dict:
	"""`bench streaming check-connection` for the form's button: cluster id, brokers and
	topics of the saved connection (and whether each topic the catalog writes to exists),
	or the exact librdkafka error. System Manager only: it uses the stored credentials; the
	answer never holds the configuration, and every stored password is redacted from it."""
	frappe.only_for("System Manager")
	from erpnext_streaming.operations.site import check_connection

	return check_connection()


def _tell_the_drainer() -> None:
	"""After the save commits: a running drainer ends its slice at the next batch boundary
	and its successor reads these settings (delivery/lifecycle.py). Never fails the save:
	without Redis the drainer picks them up at its next slice."""
	from erpnext_streaming.delivery import jobs, lifecycle

	try:
		lifecycle.settings_saved(jobs.queue_redis(timeout=1), frappe.local.site)
	except Exception:
		frappe.logger("erpnext_streaming").warning(
			"erpnext_streaming: could not tell the drainer of new settings"
		)
