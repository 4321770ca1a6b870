"""Every Streaming Settings rule: valid input passes, invalid input names the field."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from erpnext_streaming import validation as v
from erpnext_streaming.kafka_config import librdkafka_check
from erpnext_streaming.settings import CatalogRow


def rejects(fn, *args, field: str, says: str):
	with pytest.raises(v.InvalidSetting) as caught:
		fn(*args)
	assert caught.value.fieldname == field
	assert says in caught.value.message, caught.value.message
	return caught.value.message


# -- bootstrap servers ------------------------------------------------------------------


@pytest.mark.parametrize(
	"value",
	["kafka:9092", "kafka-1.example.com:9092,kafka-2.example.com:9093", "10.0.0.5:19092", "[::1]:9092",
	 "broker_1:9092", "a:1, b:65535"],
)  # fmt: skip
def test_bootstrap_accepts_host_port_lists(value):
	v.validate_bootstrap_servers(value, required=True)


@pytest.mark.parametrize(
	"value, says",
	[
		("kafka", "is not host:port"),
		("kafka:", "is not host:port"),
		(":9092", "is not host:port"),
		("kafka:abc", "port 'abc'"),
		("kafka:0", "port '0'"),
		("kafka:70000", "port '70000'"),
		("kafka:9092,", "is not host:port"),
		("bad host:9092", "is not a valid host name"),
		("http://kafka:9092", "is not a valid host name"),
	],
)
def test_bootstrap_rejects_malformed_lists_naming_the_field(value, says):
	message = rejects(v.validate_bootstrap_servers, value, True, field="bootstrap_servers", says=says)
	assert message.startswith("Bootstrap Servers")


def test_bootstrap_is_required_only_when_streaming_is_enabled():
	v.validate_bootstrap_servers("", required=False)
	rejects(v.validate_bootstrap_servers, "", True, field="bootstrap_servers", says="is required")


# -- topics -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["erpnext.sales-invoice", "a", "A_b-c.9", "x" * 249])
def test_topic_names_kafka_accepts(name):
	v.validate_topic_name(name, "dead_letter_topic", "Dead Letter Topic")


@pytest.mark.parametrize(
	"name, says",
	[("", "is empty"), (".", "cannot be '.' or '..'"), ("..", "cannot be '.' or '..'"),
	 ("x" * 250, "at most 249"), ("orders/eu", "contains '/'"), ("sales invoice", "contains ' '"),
	 ("é", "contains 'é'")],
)  # fmt: skip
def test_topic_names_kafka_refuses(name, says):
	message = rejects(v.validate_topic_name, name, "dead_letter_topic", "Dead Letter Topic",
		field="dead_letter_topic", says=says)  # fmt: skip
	assert message.startswith("Dead Letter Topic")


def test_topic_prefix_is_checked_with_the_longest_generated_topic():
	v.validate_topic_prefix("erpnext.prod")
	v.validate_topic_prefix("")
	rejects(v.validate_topic_prefix, "erp next", field="topic_prefix", says="contains ' '")
	rejects(v.validate_topic_prefix, "p" * 240, field="topic_prefix", says="at most 249")


# -- security -----------------------------------------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----\n"


def test_security_combinations_that_work():
	v.validate_security("PLAINTEXT", "", "", False, "")
	v.validate_security("SSL", "", "", False, PEM)
	v.validate_security("SASL_SSL", "SCRAM-SHA-512", "svc", True, PEM)
	v.validate_security("SASL_PLAINTEXT", "PLAIN", "svc", True, "")


@pytest.mark.parametrize(
	"args, field, says",
	[
		(("TLS", "", "", False, ""), "security_protocol", "is not one of"),
		(("SASL_SSL", "", "svc", True, ""), "sasl_mechanism", "choose one of"),
		(("SASL_SSL", "GSSAPI", "svc", True, ""), "sasl_mechanism", "choose one of"),
		(("SASL_SSL", "PLAIN", "", True, ""), "sasl_username", "is required"),
		(("SASL_PLAINTEXT", "PLAIN", "svc", False, ""), "sasl_password", "is required"),
		(("SSL", "", "", False, "not a pem"), "ssl_ca_certificate", "paste a PEM"),
		(("PLAINTEXT", "", "", False, PEM), "ssl_ca_certificate", "only used with SSL"),
	],
)
def test_security_rejections_name_the_field(args, field, says):
	rejects(v.validate_security, *args, field=field, says=says)


# -- delivery limits and masking ----------------------------------------------------------

GOOD_LIMITS = {"batch_size": 500, "max_attempts": 10, "backoff_base_seconds": 5, "backoff_cap_seconds": 3600}


def test_delivery_limits_in_range_pass():
	v.validate_limits(GOOD_LIMITS)


@pytest.mark.parametrize(
	"field, value",
	[("batch_size", 0), ("batch_size", 50_001), ("max_attempts", 0), ("max_attempts", 101),
	 ("backoff_base_seconds", 0), ("backoff_cap_seconds", 0), ("batch_size", None)],
)  # fmt: skip
def test_delivery_limits_out_of_range_name_the_field(field, value):
	rejects(v.validate_limits, {**GOOD_LIMITS, field: value}, field=field, says="must be between")


def test_backoff_cap_below_base_is_refused():
	limits = {**GOOD_LIMITS, "backoff_base_seconds": 60, "backoff_cap_seconds": 30}
	rejects(v.validate_limits, limits, field="backoff_cap_seconds", says="at least Backoff Base")


def test_mask_mode_must_be_known():
	v.validate_mask_mode("Keyed hash")
	v.validate_mask_mode("Drop")
	rejects(v.validate_mask_mode, "Blur", field="mask_mode", says="Mask Mode must be one of")


# -- producer properties ------------------------------------------------------------------


def test_known_producer_properties_with_valid_values_pass():
	rows = [("linger.ms", "5"), ("compression.type", "zstd"), ("enable.idempotence", "true")]
	v.validate_producer_properties(rows, librdkafka_check)


@pytest.mark.parametrize(
	"rows, says",
	[
		([("lingerms", "5")], "'lingerms' is not a librdkafka producer property"),
		([("group.id", "x")], "'group.id' is not a librdkafka producer property"),  # consumer-only
		([("bootstrap.servers", "a:1")], "set it in the Bootstrap Servers field"),
		([("sasl.password", "x")], "stored encrypted"),
		([("transactional.id", "t")], "not transactions"),
		([("plugin.library.paths", "/tmp/x.so")], "run code on the server"),
		([("linger.ms", "5"), ("linger.ms", "6")], "already set in row 1"),
		([("linger.ms", "")], "needs a value"),
		([("", "5")], "Property is empty"),
	],
)
def test_producer_property_rejections_name_the_row(rows, says):
	message = rejects(
		v.validate_producer_properties, rows, librdkafka_check, field="producer_properties", says=says
	)
	assert message.startswith("Producer Properties")


@pytest.mark.parametrize(
	"key, value, says",
	[
		("enable.idempotence", "false", "must stay true"),
		("acks", "1", "must stay all"),
		("acks", "0", "must stay all"),
		("request.required.acks", "1", "must stay all"),
		("partitioner", "consistent_random", "must be murmur2_random or murmur2"),
		("partitioner", "fnv1a", "must be murmur2_random or murmur2"),
		("max.in.flight.requests.per.connection", "6", "must be 1 to 5"),
		("max.in.flight", "1000000", "must be 1 to 5"),
		("message.timeout.ms", "0", "must be at least 5000"),
		("message.timeout.ms", "100", "must be at least 5000"),
		("delivery.timeout.ms", "10", "must be at least 5000"),
	],
)
def test_a_property_that_would_break_a_delivery_guarantee_is_refused_naming_it(key, value, says):
	message = rejects(
		v.validate_producer_properties,
		[(key, value)],
		librdkafka_check,
		field="producer_properties",
		says=says,
	)
	assert f"'{key}' = '{value}'" in message


@pytest.mark.parametrize(
	"key, value",
	[
		("acks", "all"),
		("acks", "-1"),
		("partitioner", "murmur2"),
		("max.in.flight.requests.per.connection", "1"),
		("max.in.flight", "5"),
		("message.timeout.ms", "120000"),
	],
)
def test_a_property_that_keeps_the_guarantees_is_accepted(key, value):
	v.validate_producer_properties([(key, value)], librdkafka_check)


def test_producer_property_values_are_checked_by_librdkafka():
	message = rejects(v.validate_producer_properties, [("compression.type", "brotli")], librdkafka_check,
		field="producer_properties", says="Invalid value")  # fmt: skip
	assert "brotli" in message


# -- event catalog --------------------------------------------------------------------------


class Facts:
	"""DoctypeFacts of a site with ERPNext's doctypes and one custom submittable doctype."""

	submittable = frozenset(
		{"Sales Invoice", "Work Order", "Job Card", "Purchase Receipt", "Delivery Note", "Payment Entry"}
	)
	plain = frozenset({"GL Entry", "Stock Ledger Entry", "Payment Ledger Entry", "Customer"})
	fields = MappingProxyType({"Sales Invoice": {"customer", "tax_id", "items.item_name"}})

	def exists(self, doctype):
		return doctype in self.submittable | self.plain

	def is_submittable(self, doctype):
		return doctype in self.submittable

	def maskable_fields(self, doctype, schema_version):
		return self.fields.get(doctype, set())


def row(doctype, idx=1, **kw):
	values = {"on_submit": True, "on_cancel": False, "on_update_after_submit": False, "on_change": False}
	values.update(kw)
	return CatalogRow(document_type=doctype, idx=idx, **values)


def test_builtin_and_submittable_doctypes_are_accepted():
	rows = [
		row(
			"Sales Invoice",
			1,
			on_cancel=True,
			on_update_after_submit=True,
			on_change=True,
			masked_fields=("tax_id",),
		),
		row("GL Entry", 2),
		row("Stock Ledger Entry", 3),
		row("Purchase Receipt", 4, on_cancel=True, topic="erp.receipts"),
		row("Payment Entry", 5, on_cancel=True, on_update_after_submit=True),
		# not marked submittable, but ERPNext inserts every row with submit(): on_submit fires
		row("Payment Ledger Entry", 6),
	]
	v.validate_catalog(rows, Facts())


@pytest.mark.parametrize(
	"rows, says",
	[
		([row("")], "Document Type is required"),
		([row("Nope")], "DocType Nope does not exist"),
		([row("Customer")], "Customer is not submittable"),
		([row("Sales Invoice", 1), row("Sales Invoice", 2)], "already in row 1"),
		([row("GL Entry", on_cancel=True)], "GL Entry has no cancel event"),
		([row("Stock Ledger Entry", on_change=True)], "has no status / progress change event"),
		([row("Purchase Receipt", on_change=True)], "has no status / progress change event"),
		([row("Sales Invoice", on_submit=False)], "tick at least one event"),
		([row("Sales Invoice", topic="bad topic")], "topic name 'bad topic'"),
		(
			[row("Sales Invoice", schema_version=-1)],
			"Schema Version -1 is not shipped (shipped: 1; 0 = newest)",
		),
		([row("Sales Invoice", schema_version=7)], "Schema Version 7 is not shipped"),
		([row("Purchase Receipt", schema_version=1)], "shipped: none: its schema is derived"),
		(
			[row("Sales Invoice", masked_fields=("tax_idd",))],
			"Fields to Mask lists tax_idd, which Sales Invoice does not have as an optional text field",
		),
	],
)
def test_catalog_rejections_name_the_row_and_doctype(rows, says):
	message = rejects(v.validate_catalog, rows, Facts(), field="event_catalog", says=says)
	assert message.startswith("Event Catalog row")


def test_a_shipped_schema_version_may_be_pinned():
	v.validate_catalog([row("Sales Invoice", schema_version=1)], Facts())


def test_a_disabled_row_may_have_no_events_ticked():
	v.validate_catalog([row("Sales Invoice", on_submit=False, enabled=False)], Facts())


def test_masking_accepts_child_table_fields():
	v.validate_catalog([row("Sales Invoice", masked_fields=("items.item_name",))], Facts())
