"""The schema loader: `.avsc` files -> self-contained, parsed, fingerprinted event schemas.

Files are `schemas/avro/<scrubbed doctype>.v<N>.avsc` naming their doctype and envelope
version (`erpnext.doctype`, `erpnext.envelope`); the envelope (`envelope.v<N>.avsc`) is
written once and its fields are spliced in front of each event's, so every published schema
stands alone, as consumers and registries want. Shipped files never change once released: a
change is a new version file, checked by `schemas.evolution`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from erpnext_streaming.schemas.errors import SchemaError, UnknownSchemaError

PACKAGE_DIR = Path(__file__).resolve().parent / "avro"
ENVELOPE_STEM = "envelope"
DOCTYPE_ATTR = "erpnext.doctype"
ENVELOPE_ATTR = "erpnext.envelope"
DOCUMENT_FIELD = "document"
_FILE = re.compile(r"^(?P<stem>[a-z0-9_]+)\.v(?P<version>[1-9][0-9]*)\.avsc$")


def scrub(doctype: str) -> str:
	"""Frappe's `scrub`: `Stock Ledger Entry` -> `stock_ledger_entry` (the file stem)."""
	return doctype.replace(" ", "_").replace("-", "_").lower()


@dataclass(frozen=True, eq=False)
class EventSchema:
	"""One version of one doctype's event schema, ready to encode with: `schema` is the
	self-contained dict (read-only), `parsed` fastavro's, `canonical` the Parsing Canonical
	Form and `fingerprint` its CRC-64-AVRO (Avro specification, "Schema Fingerprints"): 16 hex
	digits of the 8 bytes little-endian, as single-object encoding and Java's
	`SchemaNormalization` have them. `source`: the file, or `derived:<doctype>`."""

	doctype: str
	version: int
	name: str
	schema: dict = field(repr=False)
	parsed: Any = field(repr=False)
	canonical: str = field(repr=False)
	fingerprint: str
	source: str = field(default="", repr=False)

	@property
	def short_name(self) -> str:
		return self.name.rpartition(".")[2]

	@property
	def label(self) -> str:
		"""`SalesInvoiceEvent v1`, as messages name a schema."""
		return f"{self.short_name} v{self.version}"

	@property
	def document_schema(self) -> dict:
		"""The record schema of the `document` field (the doctype's body)."""
		return self.schema["fields"][-1]["type"]

	@classmethod
	def build(cls, schema: dict, doctype: str, version: int, source: str) -> EventSchema:
		try:
			parsed = fastavro.parse_schema(schema, named_schemas={})
		except Exception as e:  # fastavro raises SchemaParseException, ValueError, KeyError, ...
			raise SchemaError(f"{source}: not a valid Avro schema: {e}") from e
		canonical = to_parsing_canonical_form(schema)
		return cls(
			doctype=doctype,
			version=version,
			name=parsed["name"],  # fastavro's parsed schema names records in full
			schema=schema,
			parsed=parsed,
			canonical=canonical,
			fingerprint=fingerprint(canonical, "CRC-64-AVRO"),
			source=source,
		)


def expand(event: dict, envelope: dict) -> dict:
	"""The event file with the envelope's fields spliced in front and the envelope reference dropped."""
	own = event.get("fields") or []
	clash = {f["name"] for f in own} & {f["name"] for f in envelope["fields"]}
	if clash:
		raise SchemaError(f"{event.get('name')}: fields {sorted(clash)} are already envelope fields")
	expanded = {k: v for k, v in event.items() if k != ENVELOPE_ATTR}
	expanded["fields"] = [*envelope["fields"], *own]
	return expanded


class SchemaRegistry:
	"""The event schemas found in one or more folders (later folders add versions)."""

	def __init__(self, directories: Iterable[Path | str] = (PACKAGE_DIR,)):
		self.directories = tuple(Path(d) for d in directories)
		self._paths: dict[str, dict[int, Path]] = {}  # doctype -> version -> file
		self._envelopes: dict[int, Path] = {}
		self._cache: dict[tuple[str, int], EventSchema] = {}
		self._json: dict[Path, dict] = {}
		for directory in self.directories:
			for path in sorted(directory.glob("*.avsc")):
				self._register(path)

	def _register(self, path: Path) -> None:
		match = _FILE.match(path.name)
		if not match:
			raise SchemaError(
				f"{path}: schema files are named <doctype>.v<N>.avsc, e.g. sales_invoice.v1.avsc"
			)
		stem, version = match["stem"], int(match["version"])
		if stem == ENVELOPE_STEM:
			self._add(self._envelopes, version, path)
			return
		doctype = self._read(path).get(DOCTYPE_ATTR)
		if not isinstance(doctype, str) or scrub(doctype) != stem:
			raise SchemaError(f"{path}: '{DOCTYPE_ATTR}' must name the doctype the file is named for")
		self._add(self._paths.setdefault(doctype, {}), version, path)

	@staticmethod
	def _add(versions: dict[int, Path], version: int, path: Path) -> None:
		if version in versions:
			raise SchemaError(f"{path}: version {version} is already defined in {versions[version]}")
		versions[version] = path

	def _read(self, path: Path) -> dict:
		if path not in self._json:
			try:
				schema = json.loads(path.read_text(encoding="utf-8"))
			except (OSError, ValueError) as e:
				raise SchemaError(f"{path}: cannot read JSON: {e}") from e
			if not isinstance(schema, dict) or schema.get("type") != "record":
				raise SchemaError(f"{path}: the file must hold one record schema")
			self._json[path] = schema
		return self._json[path]

	def shipped_doctypes(self) -> tuple[str, ...]:
		return tuple(sorted(self._paths))

	def versions(self, doctype: str) -> tuple[int, ...]:
		return tuple(sorted(self._paths.get(doctype, ())))

	def envelope_versions(self) -> tuple[int, ...]:
		return tuple(sorted(self._envelopes))

	def envelope(self, version: int) -> dict:
		if version not in self._envelopes:
			raise UnknownSchemaError(f"no envelope version {version} (envelope.v{version}.avsc)")
		return self._read(self._envelopes[version])

	def get(self, doctype: str, version: int = 0) -> EventSchema:
		"""The event schema of a doctype; version 0 means the newest."""
		versions = self._paths.get(doctype)
		if not versions:
			raise UnknownSchemaError(f"no shipped event schema for doctype '{doctype}'")
		version = version or max(versions)
		key = (doctype, version)
		cached = self._cache.get(key)
		if cached is None:
			if version not in versions:
				raise UnknownSchemaError(
					f"{doctype} has no event schema version {version} (shipped: {self.versions(doctype)})"
				)
			path = versions[version]
			event = self._read(path)
			envelope_version = event.get(ENVELOPE_ATTR)
			if not isinstance(envelope_version, int):
				raise SchemaError(f"{path}: '{ENVELOPE_ATTR}' must give the envelope version, e.g. 1")
			fields = event.get("fields") or []
			if not fields or fields[-1].get("name") != DOCUMENT_FIELD:
				raise SchemaError(f"{path}: the last field must be '{DOCUMENT_FIELD}', the doctype's record")
			schema = expand(event, self.envelope(envelope_version))
			cached = self._cache[key] = EventSchema.build(schema, doctype, version, str(path))
		return cached

	def all(self) -> list[EventSchema]:
		return [self.get(d, v) for d in self.shipped_doctypes() for v in self.versions(d)]


@functools.cache
def default_registry() -> SchemaRegistry:
	"""The registry of the shipped schemas (`schemas/avro/`), built once per process."""
	return SchemaRegistry()


def get_event_schema(doctype: str, version: int = 0) -> EventSchema:
	"""The shipped event schema of a doctype; version 0 = the newest."""
	return default_registry().get(doctype, version)


def shipped_doctypes() -> tuple[str, ...]:
	return default_registry().shipped_doctypes()
