"""Write the event schemas to a folder: one self-contained `.avsc` per doctype and version,
plus `manifest.json` (doctype, version, name, fingerprint, shipped or derived, topic).

Each file is the schema exactly as the app encodes with it, so its fingerprint equals the
messages' `schema_fingerprint` header. No connection settings or secrets are written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from erpnext_streaming.schemas import EventSchema
from erpnext_streaming.schemas.registry import scrub

MANIFEST = "manifest.json"


class ExportRefused(ValueError):
	pass


def file_name(schema: EventSchema) -> str:
	return f"{scrub(schema.doctype)}.v{schema.version}.avsc"


def export(
	directory: Path | str,
	schemas: Iterable[EventSchema],
	topics: Mapping[str, str] | None = None,
	derived: Iterable[str] = (),
) -> list[Path]:
	"""Write the schemas and the manifest; returns the paths written (manifest last)."""
	directory = Path(directory)
	if directory.exists() and not directory.is_dir():
		raise ExportRefused(f"{directory} exists and is not a directory")
	directory.mkdir(parents=True, exist_ok=True)
	topics = topics or {}
	derived = set(derived)
	written, entries = [], []
	unique = {s.fingerprint: s for s in schemas}.values()  # a derived schema may also be stored
	for schema in sorted(unique, key=lambda s: (s.doctype, s.version)):
		path = directory / file_name(schema)
		path.write_text(json.dumps(schema.schema, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
		written.append(path)
		entries.append(
			{
				"file": path.name,
				"doctype": schema.doctype,
				"version": schema.version,
				"name": schema.name,
				"fingerprint": schema.fingerprint,
				"origin": "derived" if schema.doctype in derived else "shipped",
				"topic": topics.get(schema.doctype, ""),
			}
		)
	manifest = directory / MANIFEST
	manifest.write_text(
		json.dumps({"schemas": entries}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
	)
	written.append(manifest)
	return written
