"""Validation rules for Streaming Settings, free of Frappe: the controller's `validate()` turns
`InvalidSetting` into `frappe.throw`. Every message starts with the field's label (and row).

Sources: librdkafka `bootstrap.servers` ("CSV list of broker host or host:port"; we require
the port so a typo is caught at save); Kafka `org.apache.kafka.common.internals.Topic.validate`
(`[a-zA-Z0-9._-]`, at most 249 characters, not `.` or `..`); librdkafka's configuration table
(`kafka_properties`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Protocol

from erpnext_streaming import constants as c
from erpnext_streaming import kafka_properties as kp
from erpnext_streaming.schemas import default_registry
from erpnext_streaming.settings import CatalogRow

TOPIC_MAX_LENGTH = 249
_TOPIC_CHARS = re.compile(r"^[a-zA-Z0-9._-]+$")
_HOSTNAME = re.compile(
	r"^(?=.{1,253}$)[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_]([a-zA-Z0-9_-]{0,62}))*\.?$"
)
_IPV6 = re.compile(r"^\[[0-9a-fA-F:.]+\]$")
MASK_MODES = ("Keyed hash", "Drop")

LIMITS = {
	"batch_size": ("Batch Size", 1, 50_000),
	"max_attempts": ("Max Attempts", 1, 100),
	"backoff_base_seconds": ("Backoff Base (seconds)", 1, 86_400),
	"backoff_cap_seconds": ("Backoff Cap (seconds)", 1, 7 * 86_400),
}


class InvalidSetting(ValueError):
	"""A setting that cannot be saved. `fieldname` is the field to highlight."""

	def __init__(self, fieldname: str, message: str):
		super().__init__(message)
		self.fieldname = fieldname
		self.message = message


class DoctypeFacts(Protocol):
	"""What catalog validation needs to know about doctypes (Frappe meta in production)."""

	def exists(self, doctype: str) -> bool: ...

	def is_submittable(self, doctype: str) -> bool: ...

	def maskable_fields(self, doctype: str, schema_version: int) -> frozenset[str]:
		"""Fields `builders.mask` accepts: optional text fields, child fields as `table.field`."""
		...


def validate_bootstrap_servers(value: str, required: bool) -> None:
	label = "Bootstrap Servers"
	if not value:
		if required:
			raise InvalidSetting(
				"bootstrap_servers",
				f"{label} is required to enable streaming, e.g. kafka-1:9092,kafka-2:9092",
			)
		return
	for entry in value.split(","):
		entry = entry.strip()
		host, sep, port = entry.rpartition(":")
		if not entry or not sep or not host or not port:
			raise InvalidSetting(
				"bootstrap_servers",
				f"{label}: '{entry}' is not host:port (list brokers as host:port,host:port)",
			)
		if not (_HOSTNAME.match(host) or _IPV6.match(host)):
			raise InvalidSetting(
				"bootstrap_servers", f"{label}: '{host}' in '{entry}' is not a valid host name"
			)
		if not port.isdigit() or not 0 < int(port) < 65536:
			raise InvalidSetting("bootstrap_servers", f"{label}: port '{port}' in '{entry}' is not 1-65535")


def topic_name_problem(name: str) -> str | None:
	"""Why Kafka would refuse this topic name, or None."""
	if not name:
		return "is empty"
	if name in (".", ".."):
		return "cannot be '.' or '..'"
	if len(name) > TOPIC_MAX_LENGTH:
		return f"is {len(name)} characters long; Kafka allows at most {TOPIC_MAX_LENGTH}"
	if not _TOPIC_CHARS.match(name):
		bad = "".join(sorted({ch for ch in name if not _TOPIC_CHARS.match(ch)}))
		return f"contains {bad!r}; Kafka topic names may only use a-z A-Z 0-9 . _ -"
	return None


def validate_topic_name(name: str, fieldname: str, label: str) -> None:
	if problem := topic_name_problem(name):
		raise InvalidSetting(fieldname, f"{label}: topic name '{name}' {problem}")


def validate_topic_prefix(prefix: str) -> None:
	if not prefix:
		return
	# the prefix is joined with the longest built-in slug; check the worst case
	longest = max((c.default_topic(prefix, s.doctype) for s in c.BUILTIN_SPECS), key=len)
	if problem := topic_name_problem(prefix) or topic_name_problem(longest):
		raise InvalidSetting("topic_prefix", f"Topic Prefix: '{prefix}' {problem}")


def validate_security(
	protocol: str,
	mechanism: str,
	username: str,
	has_password: bool,
	ca_pem: str,
	librdkafka_check: Callable[[dict[str, str]], str | None] | None = None,
) -> None:
	"""Protocol, SASL fields and CA certificate agree; librdkafka can read the CA certificate."""
	if protocol not in kp.SECURITY_PROTOCOLS:
		raise InvalidSetting(
			"security_protocol",
			f"Security Protocol: '{protocol}' is not one of {', '.join(kp.SECURITY_PROTOCOLS)}",
		)
	if protocol.startswith("SASL"):
		if mechanism not in kp.SASL_MECHANISMS:
			raise InvalidSetting(
				"sasl_mechanism",
				f"SASL Mechanism: choose one of {', '.join(kp.SASL_MECHANISMS)} for {protocol}",
			)
		if not username:
			raise InvalidSetting("sasl_username", f"SASL Username is required for {protocol}")
		if not has_password:
			raise InvalidSetting("sasl_password", f"SASL Password is required for {protocol}")
	if ca_pem:
		_require_certificate("ssl_ca_certificate", "CA Certificate", ca_pem)
	if ca_pem and not protocol.endswith("SSL"):
		raise InvalidSetting(
			"ssl_ca_certificate", f"CA Certificate is only used with SSL or SASL_SSL, not {protocol}"
		)
	if (
		ca_pem
		and librdkafka_check
		and (error := librdkafka_check({"security.protocol": "SSL", "ssl.ca.pem": ca_pem}))
	):
		raise InvalidSetting("ssl_ca_certificate", f"CA Certificate: {error}")


def _require_certificate(fieldname: str, label: str, pem: str) -> None:
	if "-----BEGIN CERTIFICATE-----" not in pem:
		raise InvalidSetting(fieldname, f"{label}: paste a PEM certificate (-----BEGIN CERTIFICATE-----...)")


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


def normalize_pem(text: str) -> str:
	"""PEM blocks with their line breaks restored: a Password field is one line in the form,
	so a pasted key arrives with its breaks removed or turned into spaces."""
	blocks = []
	for label, body in _PEM_BLOCK.findall(text or ""):
		if ":" in body:  # RFC 1421 headers (Proc-Type, DEK-Info): keep the text as it is
			return text.strip() + "\n"
		data = "".join(body.split())
		lines = [data[i : i + 64] for i in range(0, len(data), 64)]
		blocks.append("\n".join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"]))
	return "\n".join(blocks) + "\n" if blocks else (text or "")


def validate_client_certificate(
	protocol: str,
	certificate_pem: str,
	key_pem: str,
	librdkafka_check: Callable[[dict[str, str]], str | None] | None = None,
) -> None:
	"""Client Certificate and Client Key (mutual TLS): both or neither, only with SSL or
	SASL_SSL, PEM, the key unencrypted, and librdkafka can load the pair (the key matches the
	certificate). No message ever quotes the key."""
	if not certificate_pem and not key_pem:
		return
	if not protocol.endswith("SSL"):
		field = "ssl_certificate" if certificate_pem else "ssl_key"
		raise InvalidSetting(
			field, f"Client Certificate and Client Key are only used with SSL or SASL_SSL, not {protocol}"
		)
	if not key_pem:
		raise InvalidSetting("ssl_key", "Client Key is required with a Client Certificate (PEM private key)")
	if not certificate_pem:
		raise InvalidSetting("ssl_certificate", "Client Certificate is required with a Client Key")
	_require_certificate("ssl_certificate", "Client Certificate", certificate_pem)
	if not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", key_pem):
		raise InvalidSetting(
			"ssl_key", "Client Key: paste a PEM private key (-----BEGIN PRIVATE KEY-----...)"
		)
	if "ENCRYPTED" in key_pem:
		raise InvalidSetting(
			"ssl_key",
			"Client Key: the key is encrypted with a passphrase; paste it unencrypted (this field is "
			"stored encrypted), e.g. `openssl pkey -in key.pem -out plain.pem`",
		)
	conf = {"security.protocol": "SSL", "ssl.certificate.pem": certificate_pem, "ssl.key.pem": key_pem}
	if librdkafka_check and (error := librdkafka_check(conf)):
		raise InvalidSetting("ssl_key", f"Client Certificate / Client Key: {error.replace(key_pem, '***')}")


def validate_limits(values: dict[str, int]) -> None:
	for fieldname, (label, low, high) in LIMITS.items():
		value = values.get(fieldname)
		if value is None or not low <= value <= high:
			raise InvalidSetting(fieldname, f"{label} must be between {low} and {high}, not {value}")
	if values["backoff_cap_seconds"] < values["backoff_base_seconds"]:
		raise InvalidSetting(
			"backoff_cap_seconds",
			"Backoff Cap (seconds) must be at least Backoff Base (seconds)",
		)


def validate_mask_mode(mode: str) -> None:
	if mode not in MASK_MODES:
		raise InvalidSetting("mask_mode", f"Mask Mode must be one of {', '.join(MASK_MODES)}, not '{mode}'")


def validate_producer_properties(
	rows: Iterable[tuple[str, str]], librdkafka_check: Callable[[dict[str, str]], str | None] | None = None
) -> None:
	"""Known producer properties only, none the app owns, no duplicates, values librdkafka accepts."""
	seen: dict[str, int] = {}
	props: dict[str, str] = {}
	for number, (key, value) in enumerate(rows, start=1):
		where = f"Producer Properties row {number}"
		if not key:
			raise InvalidSetting("producer_properties", f"{where}: Property is empty")
		if key in kp.OWNED_PROPERTIES:
			raise InvalidSetting(
				"producer_properties", f"{where}: '{key}' cannot be set here; {kp.OWNED_PROPERTIES[key]}"
			)
		if key in kp.SECRET_PROPERTIES:
			raise InvalidSetting(
				"producer_properties",
				f"{where}: '{key}' holds a secret, and Producer Properties are stored unencrypted "
				"(shown in the form, the version history and exports); see docs/security.md",
			)
		if key in seen:
			raise InvalidSetting("producer_properties", f"{where}: '{key}' is already set in row {seen[key]}")
		if value == "":
			raise InvalidSetting("producer_properties", f"{where}: '{key}' needs a value")
		if problem := kp.guarantee_problem(key, value):
			raise InvalidSetting("producer_properties", f"{where}: '{key}' = '{value}' {problem}")
		if librdkafka_check and (error := librdkafka_check({key: value})):
			raise InvalidSetting("producer_properties", f"{where}: {error}")
		seen[key] = number
		props[key] = value
	if props and librdkafka_check and (error := librdkafka_check(props)):
		raise InvalidSetting("producer_properties", f"Producer Properties: {error}")


def validate_catalog(rows: Iterable[CatalogRow], facts: DoctypeFacts) -> None:
	"""Doctypes exist and are submittable or built in; no duplicates; events apply; topics legal."""
	seen: dict[str, int] = {}
	for row in rows:
		where = f"Event Catalog row {row.idx}"
		doctype = row.document_type
		if not doctype:
			raise InvalidSetting("event_catalog", f"{where}: Document Type is required")
		where = f"{where} ({doctype})"
		if doctype in seen:
			raise InvalidSetting(
				"event_catalog",
				f"{where}: {doctype} is already in row {seen[doctype]}; keep one row per doctype",
			)
		seen[doctype] = row.idx
		if not facts.exists(doctype):
			raise InvalidSetting("event_catalog", f"{where}: DocType {doctype} does not exist on this site")
		builtin = doctype in c.BUILTIN_BY_DOCTYPE
		if not builtin and not facts.is_submittable(doctype):
			raise InvalidSetting(
				"event_catalog",
				f"{where}: {doctype} is not submittable; only submittable doctypes (and the built-in "
				f"{', '.join(c.BUILTIN_BY_DOCTYPE)}) can be streamed",
			)
		spec = c.spec_for(doctype)
		for kind, fieldname in c.Kind.CATALOG_FIELD.items():
			if getattr(row, fieldname) and kind not in spec.kinds:
				raise InvalidSetting(
					"event_catalog", f"{where}: {_not_applicable(doctype, kind)}; untick {_label(fieldname)}"
				)
		if row.enabled and not any(row.streams(kind) for kind in spec.kinds):
			raise InvalidSetting(
				"event_catalog", f"{where}: tick at least one event, or untick Enabled to stop streaming it"
			)
		if row.topic:
			validate_topic_name(row.topic, "event_catalog", f"{where} Topic")
		if row.schema_version:
			shipped = default_registry().versions(doctype)  # () for a doctype without shipped schemas
			if row.schema_version not in shipped:
				choices = (
					", ".join(map(str, shipped))
					if shipped
					else "none: its schema is derived from the doctype"
				)
				raise InvalidSetting(
					"event_catalog",
					f"{where}: Schema Version {row.schema_version} is not shipped (shipped: {choices}; 0 = newest)",
				)
		if row.masked_fields:
			maskable = facts.maskable_fields(doctype, row.schema_version)
			unknown = [f for f in row.masked_fields if f not in maskable]
			if unknown:
				raise InvalidSetting(
					"event_catalog",
					f"{where}: Fields to Mask lists {', '.join(unknown)}, which {doctype} does not have "
					"as an optional text field (only those can be masked and keep the record schema-valid; "
					"child fields as table.field)",
				)


def validate_encodings(
	message_encoding: str,
	rows: Iterable[CatalogRow],
	registry_url: str,
	username: str,
	has_password: bool,
	ca_pem: str,
	subject_name_strategy: str,
) -> None:
	"""Message Encoding, the catalog's overrides and the Schema Registry fields agree.

	The registry is only needed when some enabled row (or the default) uses the Confluent
	encoding; its URL must then be http(s). Nothing here contacts the registry: the drainer
	does, at publish time.
	"""
	needs_registry = _validate_encoding_choices(message_encoding, rows)
	if subject_name_strategy not in c.SUBJECT_NAME_STRATEGIES:
		raise InvalidSetting(
			"subject_name_strategy",
			f"Subject Name Strategy must be one of {', '.join(c.SUBJECT_NAME_STRATEGIES)}",
		)
	_validate_registry_urls(registry_url, needs_registry)
	_validate_registry_credentials(username, has_password)
	_validate_registry_ca(ca_pem, registry_url)
	if needs_registry and (missing := registry_client_missing()):
		raise InvalidSetting(
			"message_encoding",
			f"The {c.Encoding.CONFLUENT} encoding needs confluent_kafka.schema_registry, which cannot "
			f'be imported here ({missing}): run `bench pip install "erpnext_streaming[schema-registry]"` '
			"and restart the workers",
		)


def _validate_encoding_choices(message_encoding: str, rows: Iterable[CatalogRow]) -> bool:
	"""The default and every row's override are known encodings; does the default or an
	enabled row use the Confluent encoding (so a registry is needed)?"""
	encodings = c.Encoding.ALL
	if message_encoding not in encodings:
		raise InvalidSetting(
			"message_encoding",
			f"Message Encoding must be one of {', '.join(encodings)}, not '{message_encoding}'",
		)
	needs_registry = message_encoding == c.Encoding.CONFLUENT
	for row in rows:
		if row.encoding and row.encoding not in encodings:
			raise InvalidSetting(
				"event_catalog",
				f"Event Catalog row {row.idx} ({row.document_type}): Encoding must be empty or one of "
				f"{', '.join(encodings)}, not '{row.encoding}'",
			)
		needs_registry = needs_registry or (row.enabled and row.encoding == c.Encoding.CONFLUENT)
	return needs_registry


def _validate_registry_urls(registry_url: str, needs_registry: bool) -> None:
	"""A URL when the registry is needed; each of the comma-separated URLs http(s)."""
	if needs_registry and not registry_url:
		raise InvalidSetting(
			"schema_registry_url",
			f"Schema Registry URL is required for the {c.Encoding.CONFLUENT} encoding, "
			"e.g. https://registry.example.com:8081",
		)
	for url in filter(None, (u.strip() for u in registry_url.split(","))):
		scheme, sep, rest = url.partition("://")
		if not sep or scheme not in ("http", "https") or not rest.strip("/"):
			raise InvalidSetting(
				"schema_registry_url", f"Schema Registry URL: '{url}' is not an http:// or https:// URL"
			)


def _validate_registry_credentials(username: str, has_password: bool) -> None:
	"""Basic auth needs both halves."""
	if has_password and not username:
		raise InvalidSetting(
			"schema_registry_username", "Registry Username / API Key is required with a registry password"
		)
	if username and not has_password:
		raise InvalidSetting(
			"schema_registry_password", "Registry Password / API Secret is required with a registry username"
		)


def _validate_registry_ca(ca_pem: str, registry_url: str) -> None:
	"""A CA certificate is PEM, and only meaningful for an https:// registry."""
	if not ca_pem:
		return
	_require_certificate("schema_registry_ca_certificate", "Registry CA Certificate", ca_pem)
	if not registry_url.strip().startswith("https://"):
		raise InvalidSetting(
			"schema_registry_ca_certificate", "Registry CA Certificate is only used with an https:// URL"
		)


def registry_client_missing() -> str | None:
	"""Why `confluent_kafka.schema_registry` cannot be imported (its extra is not installed)."""
	import importlib

	try:
		importlib.import_module("confluent_kafka.schema_registry")
	except ImportError as e:
		return str(e)
	return None


def _label(fieldname: str) -> str:
	return {
		"on_submit": "Submit",
		"on_cancel": "Cancel",
		"on_update_after_submit": "Update After Submit",
		"on_change": "Status / Progress Change",
	}[fieldname]


def _not_applicable(doctype: str, kind: str) -> str:
	if kind == c.Kind.CANCEL and doctype in ("GL Entry", "Stock Ledger Entry"):
		return (
			f"{doctype} has no cancel event: ERPNext flags cancelled ledger rows with SQL and posts "
			"reversal rows, which stream as posted events with is_cancelled = 1"
		)
	return f"{doctype} has no {_label(c.Kind.CATALOG_FIELD[kind]).lower()} event"
