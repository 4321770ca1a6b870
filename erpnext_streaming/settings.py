"""Streaming Settings as plain, immutable Python values.

The Single doctype is read once (by the glue in `catalog.get_catalog` or the delivery
job) and turned into a `StreamingConfig`, which the framework-free core consumes. The
snapshot never carries the SASL password nor the client key: those are read with `get_password` only where a
producer is built, so cached copies (Redis, pickled jobs) hold no secret.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from erpnext_streaming import constants as c


def _get(obj: Any, key: str, default: Any = None) -> Any:
	"""Read a field from a Frappe Document, a frappe._dict or a plain dict."""
	getter = getattr(obj, "get", None)
	value = getter(key) if callable(getter) else getattr(obj, key, None)
	return default if value is None or value == "" else value


def _int(value: Any, default: int) -> int:
	try:
		return int(value)
	except (TypeError, ValueError):
		return default


def split_field_list(value: str | None) -> tuple[str, ...]:
	"""`"tax_id, customer_name\\ncontact_email"` -> `("tax_id", "customer_name", "contact_email")`."""
	if not value:
		return ()
	parts = (p.strip() for chunk in value.splitlines() for p in chunk.split(","))
	return tuple(dict.fromkeys(p for p in parts if p))


@dataclass(frozen=True)
class CatalogRow:
	"""One row of the Event Catalog child table."""

	document_type: str
	enabled: bool = True
	on_submit: bool = True
	on_cancel: bool = True
	on_update_after_submit: bool = True
	on_change: bool = True
	topic: str = ""
	schema_version: int = 0  # 0 = the newest shipped version
	masked_fields: tuple[str, ...] = ()
	encoding: str = ""  # "" = Streaming Settings' Message Encoding
	idx: int = 0

	def streams(self, kind: str) -> bool:
		return self.enabled and bool(getattr(self, c.Kind.CATALOG_FIELD[kind]))

	@classmethod
	def from_row(cls, row: Any) -> CatalogRow:
		return cls(
			document_type=(_get(row, "document_type", "") or "").strip(),
			enabled=bool(_int(_get(row, "enabled", 1), 1)),
			on_submit=bool(_int(_get(row, "on_submit", 0), 0)),
			on_cancel=bool(_int(_get(row, "on_cancel", 0), 0)),
			on_update_after_submit=bool(_int(_get(row, "on_update_after_submit", 0), 0)),
			on_change=bool(_int(_get(row, "on_change", 0), 0)),
			topic=(_get(row, "topic", "") or "").strip(),
			schema_version=_int(_get(row, "schema_version", 0), 0),
			masked_fields=split_field_list(_get(row, "masked_fields")),
			encoding=(_get(row, "encoding", "") or "").strip(),
			idx=_int(_get(row, "idx", 0), 0),
		)


@dataclass(frozen=True)
class StreamingConfig:
	"""Everything in Streaming Settings except secrets."""

	enabled: bool = False
	bootstrap_servers: str = ""
	client_id: str = c.DEFAULT_CLIENT_ID
	security_protocol: str = "PLAINTEXT"
	sasl_mechanism: str = ""
	sasl_username: str = ""
	ssl_ca_certificate: str = ""
	ssl_certificate: str = ""  # the client certificate (public); its key is read with get_password
	producer_properties: tuple[tuple[str, str], ...] = ()
	topic_prefix: str = c.DEFAULT_TOPIC_PREFIX
	dead_letter_topic: str = c.DEFAULT_DEAD_LETTER_TOPIC
	batch_size: int = c.DEFAULT_BATCH_SIZE
	max_attempts: int = c.DEFAULT_MAX_ATTEMPTS
	backoff_base_seconds: int = c.DEFAULT_BACKOFF_BASE_SECONDS
	backoff_cap_seconds: int = c.DEFAULT_BACKOFF_CAP_SECONDS
	stream_data_import: bool = True
	mask_mode: str = "Keyed hash"
	message_encoding: str = c.Encoding.DEFAULT
	schema_registry_url: str = ""
	schema_registry_username: str = ""  # basic auth user, or the API key
	schema_registry_ca_certificate: str = ""
	subject_name_strategy: str = c.DEFAULT_SUBJECT_NAME_STRATEGY
	schema_registry_auto_register: bool = True
	catalog: tuple[CatalogRow, ...] = field(default=())

	def encoding_for(self, row: CatalogRow) -> str:
		"""A catalog row's encoding: its own override, else the site-wide Message Encoding."""
		return row.encoding or self.message_encoding

	@classmethod
	def from_doc(cls, doc: Any) -> StreamingConfig:
		return cls(
			enabled=bool(_int(_get(doc, "enabled", 0), 0)),
			bootstrap_servers=(_get(doc, "bootstrap_servers", "") or "").strip(),
			client_id=(_get(doc, "client_id", c.DEFAULT_CLIENT_ID)).strip(),
			security_protocol=_get(doc, "security_protocol", "PLAINTEXT"),
			sasl_mechanism=_get(doc, "sasl_mechanism", ""),
			sasl_username=_get(doc, "sasl_username", ""),
			ssl_ca_certificate=_get(doc, "ssl_ca_certificate", ""),
			ssl_certificate=_get(doc, "ssl_certificate", ""),
			producer_properties=tuple(
				((_get(r, "property", "") or "").strip(), str(_get(r, "value", "")).strip())
				for r in (_get(doc, "producer_properties", ()) or ())
			),
			topic_prefix=(_get(doc, "topic_prefix", c.DEFAULT_TOPIC_PREFIX)).strip(),
			dead_letter_topic=(_get(doc, "dead_letter_topic", c.DEFAULT_DEAD_LETTER_TOPIC)).strip(),
			batch_size=_int(_get(doc, "batch_size"), c.DEFAULT_BATCH_SIZE),
			max_attempts=_int(_get(doc, "max_attempts"), c.DEFAULT_MAX_ATTEMPTS),
			backoff_base_seconds=_int(_get(doc, "backoff_base_seconds"), c.DEFAULT_BACKOFF_BASE_SECONDS),
			backoff_cap_seconds=_int(_get(doc, "backoff_cap_seconds"), c.DEFAULT_BACKOFF_CAP_SECONDS),
			stream_data_import=bool(_int(_get(doc, "stream_data_import", 1), 1)),
			mask_mode=_get(doc, "mask_mode", "Keyed hash"),
			message_encoding=_get(doc, "message_encoding", c.Encoding.DEFAULT),
			schema_registry_url=(_get(doc, "schema_registry_url", "") or "").strip(),
			schema_registry_username=(_get(doc, "schema_registry_username", "") or "").strip(),
			schema_registry_ca_certificate=_get(doc, "schema_registry_ca_certificate", ""),
			subject_name_strategy=_get(doc, "subject_name_strategy", c.DEFAULT_SUBJECT_NAME_STRATEGY),
			schema_registry_auto_register=bool(_int(_get(doc, "schema_registry_auto_register", 1), 1)),
			catalog=tuple(CatalogRow.from_row(r) for r in (_get(doc, "event_catalog", ()) or ())),
		)
