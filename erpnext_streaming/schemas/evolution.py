"""Schema evolution, structurally: can data written with one schema be read with another?

The Avro specification's schema resolution rules ("Schema Resolution"), walked field by
field, plus logical types (a `date` read as a plain `int`, or a decimal at another scale,
decodes to the wrong value without any error). Each problem is a sentence. Used when a
Schema Registry cannot say why it refuses a version (delivery/framing.py) and by the check
of the shipped versions (scripts/schema_evolution.py).
"""

from __future__ import annotations

from typing import Any

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


class Side:
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
		self.reader, self.writer = Side(reader), Side(writer)
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
