"""Check the shipped event schemas: can every version read the data of every earlier one?

    python scripts/schema_evolution.py [BACKWARD_TRANSITIVE|FORWARD_TRANSITIVE|FULL_TRANSITIVE]

The shipped rule is BACKWARD_TRANSITIVE (Confluent terms): a consumer on version N reads what
any version < N wrote. Each (reader, writer) pair gets the structural check of
`erpnext_streaming.schemas.evolution` and, when that finds nothing, sample records of the
writer schema written with fastavro and read back with the reader schema.
tests/test_evolution.py runs it over the shipped schemas, so an incompatible version fails CI.
"""

from __future__ import annotations

import sys
from datetime import date, datetime, time, timezone
from decimal import Decimal
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from erpnext_streaming.schemas.errors import SchemaError
from erpnext_streaming.schemas.evolution import Side, structural_problems
from erpnext_streaming.schemas.registry import EventSchema, SchemaRegistry, default_registry

BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
FULL_TRANSITIVE = "FULL_TRANSITIVE"
MODES = (BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE, FULL_TRANSITIVE)


class IncompatibleSchemaError(SchemaError):
	"""A schema version cannot read data written with another; `problems` lists every reason."""

	def __init__(self, problems: list[str]):
		super().__init__("\n".join(problems))
		self.problems = list(problems)


# -- resolution with fastavro -----------------------------------------------------------------


def sample(schema: Any, side: Side, filled: bool, namespace: str | None = None) -> Any:
	"""A record valid for `schema`: optional fields set (`filled`) or null, one row per table or none."""
	schema = side.resolve(schema, namespace)
	if isinstance(schema, list):
		branches = [b for b in schema if b != "null"]
		if "null" in schema and not (filled and branches):
			return None
		return sample(branches[0], side, filled, namespace)
	if isinstance(schema, str):
		return {
			"null": None,
			"boolean": True,
			"int": 7,
			"long": 7,
			"float": 1.5,
			"double": 1.5,
			"bytes": b"b",
			"string": "s",
		}[schema]
	logical, kind = schema.get("logicalType"), schema["type"]
	if logical == "decimal":
		return Decimal(1).scaleb(-schema.get("scale", 0))
	if logical:
		return {
			"date": date(2024, 3, 1),
			"time-micros": time(10, 15, 3, 250),
			"time-millis": time(10, 15, 3, 250000),
			"timestamp-micros": datetime(2024, 3, 1, 10, 15, 3, 250, tzinfo=timezone.utc),
			"timestamp-millis": datetime(2024, 3, 1, 10, 15, 3, 250000, tzinfo=timezone.utc),
			"local-timestamp-micros": datetime(2024, 3, 1, 10, 15, 3, 250),
			"local-timestamp-millis": datetime(2024, 3, 1, 10, 15, 3, 250000),
			"uuid": "1267ae89-6de4-5619-9e24-c73dcfce39c0",
		}.get(logical, sample(kind, side, filled, namespace))
	if kind == "array":
		return [sample(schema["items"], side, filled, namespace)] if filled else []
	if kind == "map":
		return {"k": sample(schema["values"], side, filled, namespace)} if filled else {}
	if kind == "enum":
		return schema["symbols"][0]
	if kind == "fixed":
		return b"\0" * schema["size"]
	inner = schema["_fullname"].rpartition(".")[0]
	return {f["name"]: sample(f["type"], side, filled, inner) for f in schema["fields"]}


def resolution_problems(reader: EventSchema, writer: EventSchema) -> list[str]:
	"""Write sample records with `writer` and read them with `reader` through fastavro."""
	side = Side(writer.schema)
	problems = []
	for filled in (True, False):
		which = "with every optional field set" if filled else "with every optional field null"
		buffer = BytesIO()
		try:
			schemaless_writer(buffer, writer.parsed, sample(writer.schema, side, filled))
			buffer.seek(0)
			schemaless_reader(buffer, writer.parsed, reader.parsed)
		except Exception as e:  # fastavro: SchemaResolutionError, ValueError, ...
			problems.append(f"reading a v{writer.version} record {which} fails: {e}")
	return problems


# -- the check --------------------------------------------------------------------------------


def pair_problems(reader: EventSchema, writer: EventSchema) -> list[str]:
	"""Why `reader` cannot read data written with `writer`, each as a full sentence."""
	added = "added" if reader.version > writer.version else "removed"
	if reader.name != writer.name:
		problems = [f"the record name changed from {writer.name} to {reader.name}"]
	else:
		problems = structural_problems(reader.schema, writer.schema, added)
		problems = problems or resolution_problems(reader, writer)
	return [f"{reader.label} cannot read v{writer.version}: {p}" for p in problems]


def doctype_problems(registry: SchemaRegistry, doctype: str, mode: str = BACKWARD_TRANSITIVE) -> list[str]:
	if mode not in MODES:
		raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
	schemas = [registry.get(doctype, v) for v in registry.versions(doctype)]
	problems = []
	for i, newer in enumerate(schemas):
		for older in schemas[:i]:
			if mode != FORWARD_TRANSITIVE:
				problems += pair_problems(newer, older)
			if mode != BACKWARD_TRANSITIVE:
				problems += pair_problems(older, newer)
	return problems


def check(registry: SchemaRegistry | None = None, mode: str = BACKWARD_TRANSITIVE) -> list[str]:
	"""Every problem over every doctype of the registry (default: the shipped schemas)."""
	registry = registry or default_registry()
	return [p for doctype in registry.shipped_doctypes() for p in doctype_problems(registry, doctype, mode)]


def assert_compatible(registry: SchemaRegistry | None = None, mode: str = BACKWARD_TRANSITIVE) -> None:
	"""Raise `IncompatibleSchemaError` listing every problem, if there is any."""
	problems = check(registry, mode)
	if problems:
		raise IncompatibleSchemaError(problems)


if __name__ == "__main__":
	found = check(mode=sys.argv[1] if len(sys.argv) > 1 else BACKWARD_TRANSITIVE)
	print("\n".join(found) or "every shipped schema version reads its predecessors' data")
	sys.exit(1 if found else 0)
