"""A generated Avro binary writer per event schema: the capture hot path's encoder.

`fastavro.schemaless_writer` walks the schema for every record and, for each `["null", T]`
union (most fields of a document), validates the datum against the branches before it
writes. An event schema is fixed, so `compile_writer(parsed)` turns it once into straight
Python code: one function per record, each field's type known in advance. On the
benchmark's ERPNext-shaped events it is 1.7x (Job Card) to 5x (Work Order) faster
(benchmarks/RESULTS.md, P1).

The encoding is Avro 1.11's binary encoding (specification, "Binary Encoding"): int and
long as zig-zag varints, double as 8 bytes little-endian, string as length + UTF-8,
union as branch index + value, array as one block (count, items) and a 0 terminator,
record as its fields in order; the logical types (date, time-micros, timestamp-micros,
local-timestamp-micros, decimal on bytes) as fastavro prepares them.

The bytes are fastavro's, exactly (tests/test_avro_writer.py compares them on the
shipped schemas, fuzzed documents and every supported type; tests/test_derive.py on a
derived schema). The writer only takes the values the capture builders produce: a value
of any other class (records: plain dicts without union hints), a missing field, an int
out of its range or a decimal that does not fit raises `Fallback`, and the caller
(`AvroEventSerializer`) hands that record to fastavro, which encodes it or refuses it
with its own error. A schema with a type the generator does not know (enum, map, fixed,
a union other than `["null", T]`, ...) gets no writer (`compile_writer` returns None):
fastavro encodes all its records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

Writer = Callable[[dict], bytes]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_EPOCH_NAIVE = datetime(1970, 1, 1)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DECIMAL_MEMO = 4096  # encoded decimals kept per field (amounts repeat within documents)
_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class Fallback(Exception):
	"""The generated writer does not take this value; fastavro decides."""


class Unsupported(Exception):
	"""The schema has a type the generator does not know."""


def _varint(zigzag: int) -> bytes:
	out = bytearray()
	while zigzag & ~0x7F:
		out.append((zigzag & 0x7F) | 0x80)
		zigzag >>= 7
	out.append(zigzag)
	return bytes(out)


# the varints of the zig-zag values below 2**14 (lengths, counts, small numbers, union indexes)
_SMALL = tuple(_varint(z) for z in range(1 << 14))
# 14 bits as the two bytes of a longer varint (both with the continuation bit): a timestamp
# (≈ 2**51 microseconds) is three of them and a `_SMALL`, not eight turns of `_varint`'s
# loop (≈ 0.24 µs instead of ≈ 0.7; a Job Card event writes about ten; P1 in RESULTS.md)
_PAIRS = tuple(bytes(((c & 0x7F) | 0x80, (c >> 7) | 0x80)) for c in range(1 << 14))


def long_bytes(value: int) -> bytes:
	"""A long as Avro writes it: zig-zag, then a varint (7 bits a byte, low bits first)."""
	zigzag = (value << 1) ^ (value >> 63)
	if zigzag < 16384:
		return _SMALL[zigzag]
	parts = []
	while zigzag >= 16384:
		parts.append(_PAIRS[zigzag & 0x3FFF])
		zigzag >>= 14
	parts.append(_SMALL[zigzag])
	return b"".join(parts)


def decimal_bytes(value: Decimal, precision: int, scale: int) -> bytes:
	"""A decimal on `bytes` with its length prefix: the unscaled value, two's complement,
	big-endian, with fastavro's length rule ((bit_length + 8) // 8), so the bytes match."""
	sign, digits, exponent = value.as_tuple()
	if not isinstance(exponent, int) or len(digits) > precision or exponent + scale < 0:
		raise Fallback  # NaN, infinity, or does not fit: fastavro raises its own error
	unscaled = 0
	for digit in digits:
		unscaled = unscaled * 10 + digit
	unscaled *= 10 ** (exponent + scale)
	size = (unscaled.bit_length() + 8) // 8
	raw = (-unscaled if sign else unscaled).to_bytes(size, byteorder="big", signed=True)
	return long_bytes(size) + raw


class _Generator:
	def __init__(self) -> None:
		self.functions: list[str] = []
		self.records: dict[str, str] = {}  # full and short record names -> function name
		self.env: dict[str, Any] = {
			"Fallback": Fallback,
			"SMALL": _SMALL,
			"long_bytes": long_bytes,
			"decimal_bytes": decimal_bytes,
			"pack_double": struct.Struct("<d").pack,
			"str": str,
			"int": int,
			"float": float,
			"bool": bool,
			"list": list,
			"date": date,
			"datetime": datetime,
			"time": time,
			"Decimal": Decimal,
			"EPOCH": _EPOCH,
			"EPOCH_NAIVE": _EPOCH_NAIVE,
			"EPOCH_ORDINAL": _EPOCH_ORDINAL,
		}
		self.count = 0

	def var(self) -> str:
		self.count += 1
		return f"v{self.count}"

	def value(self, avro: Any, var: str, indent: int, out: list[str], namespace: str) -> None:
		"""Append the lines that write `var`, of Avro type `avro`, through `w`."""
		p = "\t" * indent
		if isinstance(avro, list):
			if len(avro) != 2 or avro.count("null") != 1:
				raise Unsupported(f"union {avro}")
			null = avro.index("null")
			out += [f"{p}if {var} is None:", f"{p}\tw({_SMALL[2 * null]!r})", f"{p}else:"]
			out.append(f"{p}\tw({_SMALL[2 * (1 - null)]!r})")
			self.value(avro[1 - null], var, indent + 1, out, namespace)
			return
		if isinstance(avro, str):
			kind, logical = avro, None
			# fastavro's parsed schema names records in full (a record without namespace by
			# its bare name); a bare name inside a namespace may still mean that namespace's
			named = self.records.get(avro) or (self.records.get(f"{namespace}.{avro}") if namespace else None)
			if named:
				out.append(f"{p}{named}({var}, w)")
				return
		elif isinstance(avro, dict):
			kind, logical = avro.get("type"), avro.get("logicalType")
		else:
			raise Unsupported(repr(avro))
		check = f"{p}if {var}.__class__ is not {{}}: raise Fallback"
		if kind == "record":
			out.append(f"{p}{self.record(avro, namespace)}({var}, w)")
		elif kind == "string" and logical is None:
			encoded = self.var()
			out += [check.format("str"), f"{p}{encoded} = {var}.encode()", f"{p}n = len({encoded})"]
			out += [f"{p}w(SMALL[n << 1] if n < 8192 else long_bytes(n))", f"{p}w({encoded})"]
		elif kind == "boolean":
			out += [check.format("bool"), f"{p}w(b'\\x01' if {var} else b'\\x00')"]
		elif kind == "double":
			out += [check.format("float"), f"{p}w(pack_double({var}))"]
		elif kind in _RANGE and logical is None:
			low, high = _RANGE[kind]
			out += [check.format("int"), f"{p}if not {low} <= {var} <= {high}: raise Fallback"]
			out.append(f"{p}w(long_bytes({var}))")
		elif kind == "int" and logical == "date":
			out += [check.format("date"), f"{p}w(long_bytes({var}.toordinal() - EPOCH_ORDINAL))"]
		elif kind == "long" and logical in ("timestamp-micros", "local-timestamp-micros"):
			delta = self.var()
			aware = "is None" if logical == "timestamp-micros" else "is not None"
			epoch = "EPOCH" if logical == "timestamp-micros" else "EPOCH_NAIVE"
			out += [check.format("datetime"), f"{p}if {var}.tzinfo {aware}: raise Fallback"]
			out += [f"{p}{delta} = {var} - {epoch}"]
			out.append(
				f"{p}w(long_bytes(({delta}.days * 86400 + {delta}.seconds) * 1000000 + {delta}.microseconds))"
			)
		elif kind == "long" and logical == "time-micros":
			out += [check.format("time")]
			seconds = f"({var}.hour * 3600 + {var}.minute * 60 + {var}.second)"
			out.append(f"{p}w(long_bytes({seconds} * 1000000 + {var}.microsecond))")
		elif kind == "bytes" and logical == "decimal":
			memo, encoded = self.var(), self.var()
			self.env[memo] = {}
			precision, scale = int(avro["precision"]), int(avro.get("scale", 0))
			out += [check.format("Decimal"), f"{p}{encoded} = {memo}.get({var}.__str__())"]
			out += [
				f"{p}if {encoded} is None:",
				f"{p}\t{encoded} = decimal_bytes({var}, {precision}, {scale})",
			]
			out += [f"{p}\tif len({memo}) < {_DECIMAL_MEMO}: {memo}[{var}.__str__()] = {encoded}"]
			out.append(f"{p}w({encoded})")
		elif kind == "array":
			item = self.var()
			out += [check.format("list"), f"{p}if {var}:", f"{p}\tw(long_bytes(len({var})))"]
			out.append(f"{p}\tfor {item} in {var}:")
			self.value(avro["items"], item, indent + 2, out, namespace)
			out.append(f"{p}w(b'\\x00')")
		else:
			raise Unsupported(repr(avro))

	def record(self, schema: dict, namespace: str) -> str:
		name = schema["name"]
		namespace = schema.get("namespace", namespace) if "." not in name else name.rpartition(".")[0]
		full = name if "." in name else f"{namespace}.{name}" if namespace else name
		function = f"record_{len(self.records)}"
		self.records[full] = function  # full names only: two namespaces may share a short name
		# a plain dict only: fastavro reads other mappings (defaults for missing keys) and
		# union hints ("-type") its own way
		lines = [f"def {function}(d, w):", "\tif d.__class__ is not dict or '-type' in d: raise Fallback"]
		for field in schema["fields"]:
			var = self.var()
			lines.append(f"\t{var} = d[{field['name']!r}]")
			self.value(field["type"], var, 1, lines, namespace)
		self.functions.append("\n".join(lines))
		return function


def compile_writer(parsed: dict) -> Writer | None:
	"""The writer of records of this (parsed) record schema, or None if the schema has a type
	the generator does not know (fastavro then encodes every record)."""
	generator = _Generator()
	try:
		top = generator.record(parsed, "")
	except (Unsupported, KeyError, TypeError, ValueError, RecursionError):
		return None
	source = "\n\n".join(generator.functions)
	source += (
		f"\n\ndef write(record):\n\tout = bytearray()\n\t{top}(record, out.extend)\n\treturn bytes(out)\n"
	)
	namespace = dict(generator.env)
	exec(compile(source, f"<avro writer {parsed.get('name', '')}>", "exec"), namespace)
	return namespace["write"]
