"""Schema evolution check: can every version read the data of every earlier one?

The shipped rule is BACKWARD_TRANSITIVE (Confluent terms; FORWARD_ and FULL_TRANSITIVE are
available). Each (reader, writer) pair gets two checks: the Avro specification's schema
resolution rules walked field by field, plus logical types (a `date` read as a plain `int`
decodes to the wrong value without any error); and sample records of the writer schema
written with fastavro and read back with the reader schema. Each problem is a sentence.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from decimal import Decimal
from io import BytesIO
from typing import Any

from fastavro import schemaless_reader, schemaless_writer

from erpnext_streaming.schemas.errors import IncompatibleSchemaError
from erpnext_streaming.schemas.registry import EventSchema, SchemaRegistry, default_registry

BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
FULL_TRANSITIVE = "FULL_TRANSITIVE"
MODES = (BACKWARD_TRANSITIVE, FORWARD_TRANSITIVE, FULL_TRANSITIVE)

PRIMITIVES = frozenset(("null", "boolean", "int", "long", "float", "double", "bytes", "string"))
NAMED = frozenset(("record", "error", "enum", "fixed"))

# writer type -> reader types that can read it (Avro specification, "Schema Resolution")
_PROMOTIONS = {
	"int": {"int", "long", "float", "double"},
	"long": {"long", "float", "double"},
	"float": {"float", "double"},
	"string": {"string", "bytes"},
	"bytes": {"bytes", "string"},
}


# -- structural check -----------------------------------------------------------------------


def fullname(name: str, namespace: str | None) -> str:
	"""A type's full name (specification, "Names"): a dotted name is full, else the namespace prefixes it."""
	return name if "." in name or not namespace else f"{namespace}.{name}"


def _named_types(schema: Any, namespace: str | None = None, out: dict | None = None) -> dict[str, dict]:
	"""Every named type defined in a schema, by full name (to resolve references)."""
	out = {} if out is None else out
	if isinstance(schema, list):
		for branch in schema:
			_named_types(branch, namespace, out)
	elif isinstance(schema, dict):
		kind = schema.get("type")
		if kind in NAMED:
			name = fullname(schema["name"], schema.get("namespace", namespace))
			out[name] = {**schema, "_fullname": name}
			namespace = name.rpartition(".")[0] or None
			for field in schema.get("fields", ()):
				_named_types(field["type"], namespace, out)
		elif kind in ("array", "map"):
			_named_types(schema.get("items", schema.get("values")), namespace, out)
		elif isinstance(kind, (dict, list)):
			_named_types(kind, namespace, out)
	return out


class _Side:
	"""One schema being compared: resolves named-type references within it."""

	def __init__(self, schema: dict):
		self.named = _named_types(schema)

	def resolve(self, schema: Any, namespace: str | None) -> Any:
		"""References and inline named types -> their definition (with `_fullname`); `{"type": "int"}` -> "int"."""
		if isinstance(schema, str):
			if schema in PRIMITIVES:
				return schema
			return self.named.get(fullname(schema, namespace), self.named.get(schema, schema))
		if isinstance(schema, list):
			return schema
		kind = schema["type"]
		if not isinstance(kind, str):
			return self.resolve(kind, namespace)
		if kind in NAMED:
			return self.named[fullname(schema["name"], schema.get("namespace", namespace))]
		if kind in PRIMITIVES and "logicalType" not in schema:
			return kind
		return schema


def describe(schema: Any) -> str:
	"""A short type name for messages: `string`, `decimal(21,9)`, `null|date`, `array<SalesInvoiceItem>`."""
	if isinstance(schema, list):
		return "|".join(describe(b) for b in schema)
	if isinstance(schema, str):
		return schema.rpartition(".")[2]
	logical = schema.get("logicalType")
	if logical == "decimal":
		return f"decimal({schema.get('precision')},{schema.get('scale', 0)})"
	if logical:
		return logical
	kind = schema["type"]
	if kind == "array":
		return f"array<{describe(schema['items'])}>"
	if kind == "map":
		return f"map<{describe(schema['values'])}>"
	if kind in NAMED:
		return schema["name"].rpartition(".")[2]
	return describe(kind)


def _kind(schema: Any) -> str:
	return "union" if isinstance(schema, list) else schema if isinstance(schema, str) else schema["type"]


class _Comparison:
	def __init__(self, reader: dict, writer: dict, added: str):
		self.reader, self.writer = _Side(reader), _Side(writer)
		self.added = added  # "added" when the reader is newer, "removed" when older
		self.problems: list[str] = []
		self._seen: set[tuple[str, str]] = set()

	def compare(self, r: Any, w: Any, path: str, r_ns: str | None, w_ns: str | None) -> None:
		r, w = self.reader.resolve(r, r_ns), self.writer.resolve(w, w_ns)
		if not self._readable(r, w, r_ns, w_ns, path, report=True):
			self.problems.append(f"field '{path}' changed type from {describe(w)} to {describe(r)}")

	def _readable(self, r: Any, w: Any, r_ns, w_ns, path: str, report: bool) -> bool:
		"""Whether data of writer type `w` resolves to reader type `r`; records report their fields."""
		r, w = self.reader.resolve(r, r_ns), self.writer.resolve(w, w_ns)
		if _kind(w) == "union":
			return all(self._readable(r, branch, r_ns, w_ns, path, report) for branch in w)
		if _kind(r) == "union":
			matches = [b for b in r if self._readable(b, w, r_ns, w_ns, path, report=False)]
			return bool(matches) and (not report or self._readable(matches[0], w, r_ns, w_ns, path, True))
		if not self._logical_matches(r, w):
			return False
		rk, wk = _kind(r), _kind(w)
		if wk in PRIMITIVES or rk in PRIMITIVES:
			return rk in _PROMOTIONS.get(wk, {wk})
		if rk != wk:
			return False
		if rk == "array":
			return self._readable(r["items"], w["items"], r_ns, w_ns, path, report)
		if rk == "map":
			return self._readable(r["values"], w["values"], r_ns, w_ns, path, report)
		if not self._names_match(r, w):
			return False
		if rk == "fixed":
			return r["size"] == w["size"]
		if rk == "enum":
			missing = [s for s in w["symbols"] if s not in r["symbols"]]
			if missing and "default" not in r and report:
				self.problems.append(f"field '{path}' lost enum symbols {missing}")
			return not missing or "default" in r
		return self._record(r, w, path, report)

	def _record(self, r: dict, w: dict, path: str, report: bool) -> bool:
		key = (r["_fullname"], w["_fullname"])
		if key in self._seen:  # recursive types: compared once
			return True
		if not report:
			return True  # a record branch of a union matches by name; its fields are reported when chosen
		self._seen.add(key)
		r_ns, w_ns = r["_fullname"].rpartition(".")[0], w["_fullname"].rpartition(".")[0]
		written = {f["name"]: f for f in w["fields"]}
		prefix = f"{path}." if path else ""
		for field in r["fields"]:
			source = next(
				(written[n] for n in (field["name"], *field.get("aliases", ())) if n in written), None
			)
			if source is None:
				if "default" not in field:
					self.problems.append(
						f"field '{prefix}{field['name']}' was {self.added} without a default"
					)
				continue
			self.compare(field["type"], source["type"], prefix + field["name"], r_ns, w_ns)
		return True

	@staticmethod
	def _names_match(r: dict, w: dict) -> bool:
		"""Named types match on their unqualified name (Avro specification) or a reader alias."""
		short = w["_fullname"].rpartition(".")[2]
		aliases = {a.rpartition(".")[2] for a in r.get("aliases", ())}
		return r["_fullname"].rpartition(".")[2] == short or short in aliases

	@staticmethod
	def _logical_matches(r: Any, w: Any) -> bool:
		def logical(s: Any) -> tuple:
			if not isinstance(s, dict) or "logicalType" not in s:
				return ()
			return (s["logicalType"], s.get("precision"), s.get("scale", 0))

		return logical(r) == logical(w)


def structural_problems(reader: dict, writer: dict, added: str = "added") -> list[str]:
	"""Why data written with `writer` cannot be read with `reader`, following Avro resolution."""
	comparison = _Comparison(reader, writer, added)
	comparison.compare(reader, writer, "", None, None)
	return comparison.problems


# -- resolution with fastavro -----------------------------------------------------------------


def sample(schema: Any, side: _Side, filled: bool, namespace: str | None = None) -> Any:
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
	side = _Side(writer.schema)
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
