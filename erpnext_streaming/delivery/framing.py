"""Message framing at publish time: schemaless Avro, Avro single-object, Confluent wire format
(docs/schema-registry.md has the byte layouts and the registry steps).

Capture writes the plain Avro body inside the user's transaction and never calls a network
service there, so the drainer frames each message here, just before producing it. Confluent
schema ids come from `confluent_kafka.schema_registry` (lookup, compatibility check,
register), cached per process; a refusal is permanent (the row goes Dead before anything of
that version is published), an unreachable registry is retriable (Failed, holding its
company back like a broker outage), and both are remembered for a while so a batch asks once.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

from erpnext_streaming.delivery.policy import Classified
from erpnext_streaming.delivery.state import Outcome
from erpnext_streaming.schemas import EventSchema, UnknownSchemaError, default_registry

SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
# HTTP statuses / registry error codes that mean "this schema is refused", not "try later"
_REFUSED_HTTP = frozenset({409, 422})


class FramingError(Exception):
	"""A row could not be framed. `retriable`: the registry could not be reached (try
	again later); otherwise the schema was refused or cannot be found (Dead)."""

	def __init__(self, message: str, retriable: bool = False):
		super().__init__(message)
		self.message = message
		self.retriable = retriable

	def classified(self) -> Classified:
		if self.retriable:
			return Classified(Outcome.RETRIABLE, False, f"schema registry unavailable: {self.message}")
		return Classified(Outcome.PERMANENT, False, self.message)


def single_object(fingerprint_hex: str, body: bytes) -> bytes:
	"""Avro single-object encoding: `C3 01`, the 8-byte little-endian CRC-64-AVRO, the body."""
	fingerprint = bytes.fromhex(fingerprint_hex or "")
	if len(fingerprint) != 8:
		raise FramingError(f"the row's schema fingerprint {fingerprint_hex!r} is not 8 bytes of hex")
	return SINGLE_OBJECT_MARKER + fingerprint + body


# -- writer schemas --------------------------------------------------------------------


def shipped_schema(doctype: str, version: int, fingerprint: str) -> EventSchema:
	"""The shipped schema a row was written with, checked against its fingerprint."""
	try:
		schema = default_registry().get(doctype, version)
	except UnknownSchemaError as e:
		raise FramingError(f"cannot find the writer schema: {e}")
	if fingerprint and schema.fingerprint != fingerprint:
		raise FramingError(
			f"{schema.label} has fingerprint {schema.fingerprint}, the row says {fingerprint}: "
			"the schema file changed after the event was captured"
		)
	return schema


# -- the registry ------------------------------------------------------------------------

_clients: dict[tuple, Any] = {}
_ids: dict[tuple[str, str, str], int] = {}  # (registry URL, subject, fingerprint) -> schema id
_lock = threading.Lock()


def registry_config(
	url: str, username: str = "", password: str | None = None, ca_pem: str = "", timeout: float = 10
) -> dict[str, Any]:
	"""`SchemaRegistryClient` configuration. Basic auth carries a user/password or an API
	key/secret; a CA certificate is written once per process to a private file (the
	client reads `ssl.ca.location`)."""
	conf: dict[str, Any] = {"url": url.strip(), "timeout": timeout, "max.retries": 1}
	if username:
		conf["basic.auth.user.info"] = f"{username}:{password or ''}"
	if ca_pem:
		conf["ssl.ca.location"] = _ca_file(ca_pem)
	return conf


def _ca_file(pem: str) -> str:
	directory = os.path.join(tempfile.gettempdir(), f"erpnext_streaming-{os.getuid()}")
	os.makedirs(directory, mode=0o700, exist_ok=True)
	path = os.path.join(directory, f"registry-ca-{hashlib.sha256(pem.encode()).hexdigest()[:16]}.pem")
	if not os.path.exists(path):
		fd, tmp = tempfile.mkstemp(dir=directory)
		with os.fdopen(fd, "w") as f:
			f.write(pem)
		os.replace(tmp, path)
	return path


def registry_client(conf: dict[str, Any]):
	"""One `SchemaRegistryClient` per configuration and process (its own caches included);
	a `mock://` URL gives confluent_kafka's in-memory mock, shared the same way."""
	key = tuple(sorted((k, str(v)) for k, v in conf.items()))
	with _lock:
		client = _clients.get(key)
		if client is None:
			from confluent_kafka.schema_registry import SchemaRegistryClient

			client = _clients[key] = SchemaRegistryClient.new_client(dict(conf))
		return client


def subject_name(strategy: str, topic: str, record_name: str) -> str:
	"""The subject of a value schema, by confluent_kafka's own strategy functions."""
	from confluent_kafka.schema_registry import (
		record_subject_name_strategy,
		topic_record_subject_name_strategy,
		topic_subject_name_strategy,
	)
	from confluent_kafka.serialization import MessageField, SerializationContext

	functions = {
		"TopicRecordNameStrategy": topic_record_subject_name_strategy,
		"TopicNameStrategy": topic_subject_name_strategy,
		"RecordNameStrategy": record_subject_name_strategy,
	}
	if strategy not in functions:
		raise FramingError(f"unknown subject name strategy {strategy!r}")
	return functions[strategy](SerializationContext(topic, MessageField.VALUE), record_name)


def registry_schema(schema: EventSchema):
	"""The `Schema` registered for an event schema: its full JSON (docs and all)."""
	from confluent_kafka.schema_registry import Schema

	return Schema(json.dumps(schema.schema, separators=(",", ":"), ensure_ascii=False), "AVRO")


def _is_mock(client: Any) -> bool:
	"""confluent_kafka's `mock://` client (its class lives in a private module: match the name)."""
	return any(cls.__name__ == "MockSchemaRegistryClient" for cls in type(client).__mro__)


def _unreachable(error: Exception) -> bool:
	"""Errors worth retrying: no answer, or the registry's own 5xx / 408 / 429."""
	from confluent_kafka.schema_registry.error import SchemaRegistryError

	if isinstance(error, SchemaRegistryError):
		status = error.http_status_code
		return status in (401, 403, 408, 429) or status >= 500 or status < 0
	return True  # httpx transport errors, timeouts, DNS, TLS: the network


class SchemaIds:
	"""Schema ids from a Confluent-compatible registry, checked and cached (module doc).

	`url` names the registry in the per-process id cache (ids are per registry)."""

	@classmethod
	def from_config(cls, conf: dict[str, Any], **kwargs: Any) -> SchemaIds:
		return cls(registry_client(conf), conf["url"], **kwargs)

	def __init__(
		self,
		client: Any,
		url: str,
		strategy: str = "TopicRecordNameStrategy",
		auto_register: bool = True,
		refusal_ttl: float = 60.0,
		clock: Callable[[], float] = time.monotonic,
		unavailable_ttl: float = 10.0,
	):
		self.client = client
		self.strategy = strategy
		self.auto_register = auto_register
		self.refusal_ttl = refusal_ttl
		self.clock = clock
		self.url = url
		self.unavailable_ttl = unavailable_ttl
		self._refused: dict[tuple[str, str], tuple[float, str]] = {}
		self._unavailable: tuple[float, str] | None = None  # (until, reason) after a network failure
		self.calls = 0  # registry look-ups made (for tests and statistics)

	def schema_id(self, topic: str, schema: EventSchema) -> int:
		subject = subject_name(self.strategy, topic, schema.name)
		key = (self.url, subject, schema.fingerprint)
		cached = _ids.get(key)
		if cached is not None:
			return cached
		refused = self._refused.get(key[1:])
		if refused and self.clock() < refused[0]:
			raise FramingError(refused[1])
		if self._unavailable and self.clock() < self._unavailable[0]:
			raise FramingError(self._unavailable[1], retriable=True)
		try:
			schema_id = self._resolve(subject, schema)
		except FramingError as e:
			if e.retriable:
				self._unavailable = (self.clock() + self.unavailable_ttl, e.message)
			else:
				self._refused[key[1:]] = (self.clock() + self.refusal_ttl, e.message)
			raise
		_ids[key] = schema_id
		return schema_id

	def _resolve(self, subject: str, schema: EventSchema) -> int:
		from confluent_kafka.schema_registry.error import SchemaRegistryError

		candidate = registry_schema(schema)
		self.calls += 1
		try:
			return self.client.lookup_schema(subject, candidate).schema_id
		except SchemaRegistryError as e:
			if e.http_status_code != 404:
				raise self._failure(e, subject, schema, "looking the schema up")
		except Exception as e:
			raise self._failure(e, subject, schema, "looking the schema up")
		if not self.auto_register:
			raise FramingError(
				f"{schema.label} is not registered under subject '{subject}' and Register New Schema "
				"Versions is off: register it in the registry, then requeue these rows"
			)
		problems = self._incompatibility(subject, schema, candidate)
		if problems is not None:
			raise FramingError(self._refusal(subject, schema, problems))
		try:
			return self.client.register_schema(subject, candidate)
		except Exception as e:
			raise self._failure(e, subject, schema, "registering the schema")

	def _incompatibility(self, subject: str, schema: EventSchema, candidate: Any) -> str | None:
		"""None when the registry accepts the new version for the subject, else why not."""
		from confluent_kafka.schema_registry.error import SchemaRegistryError

		if _is_mock(self.client):
			return self._local_check(subject, schema)
		try:
			compatible = self.client.test_compatibility_all_versions(subject, candidate)
		except SchemaRegistryError as e:
			if e.http_status_code == 404:
				return None  # a new subject: nothing to be compatible with
			raise self._failure(e, subject, schema, "checking compatibility")
		except Exception as e:
			raise self._failure(e, subject, schema, "checking compatibility")
		if compatible:
			return None
		level = self._level(subject)
		details = self._local_check(subject, schema) or ""
		return f"the registry reports it incompatible with the subject's versions (compatibility {level}){details}"

	def _level(self, subject: str) -> str:
		for args in ((subject,), ()):
			try:
				return str(self.client.get_compatibility(*args))
			except Exception:
				continue
		return "unknown"

	def _local_check(self, subject: str, schema: EventSchema) -> str | None:
		"""The app's evolution check against the subject's latest registered version."""
		from confluent_kafka.schema_registry.error import SchemaRegistryError

		from erpnext_streaming.schemas.evolution import structural_problems

		try:
			latest = self.client.get_latest_version(subject)
		except SchemaRegistryError as e:
			if e.http_status_code == 404:
				return None
			raise self._failure(e, subject, schema, "reading the latest version")
		problems = structural_problems(schema.schema, json.loads(latest.schema.schema_str))
		if not problems:
			return None
		return f": version {latest.version} (id {latest.schema_id}) cannot be read by it: " + "; ".join(
			problems
		)

	def _refusal(self, subject: str, schema: EventSchema, problems: str) -> str:
		return (
			f"schema registry refused {schema.label} (fingerprint {schema.fingerprint}) for subject "
			f"'{subject}': {problems.lstrip(': ')}. Nothing of this version was published; make the schema "
			"compatible or change the subject's compatibility, then requeue these rows"
		)

	def _failure(self, error: Exception, subject: str, schema: EventSchema, doing: str) -> FramingError:
		from confluent_kafka.schema_registry.error import SchemaRegistryError

		if isinstance(error, SchemaRegistryError) and error.http_status_code in _REFUSED_HTTP:
			return FramingError(self._refusal(subject, schema, str(error)))
		if _unreachable(error):
			return FramingError(f"{doing} for subject '{subject}': {type(error).__name__}: {error}", True)
		return FramingError(f"schema registry error {doing} for subject '{subject}': {error}")


class Framer:
	"""Confluent framing for the drainer (schemaless and single-object bodies are framed in
	the user's transaction, `messages.bundle`). `schema_lookup(doctype, version, fingerprint)`
	finds the writer schema to register (shipped by default; the Frappe glue adds derived ones)."""

	def __init__(
		self,
		ids: SchemaIds | None = None,
		schema_lookup: Callable[[str, int, str], EventSchema] = shipped_schema,
	):
		self.ids = ids
		self.schema_lookup = schema_lookup

	def confluent(self, row: Any, body: bytes) -> bytes:
		from confluent_kafka.schema_registry import prefix_schema_id_serializer
		from confluent_kafka.schema_registry.serde import SchemaId

		if self.ids is None:
			raise FramingError(
				"the row's encoding is Confluent Schema Registry but no Schema Registry URL is configured"
			)
		schema = self.schema_lookup(
			row["reference_doctype"], int(row["schema_version"] or 0), row["schema_fingerprint"]
		)
		schema_id = self.ids.schema_id(row["topic"], schema)
		return prefix_schema_id_serializer(body, None, SchemaId("AVRO", schema_id))


DEFAULT_FRAMER = Framer()
