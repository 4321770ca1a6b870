"""Record builders compiled from a document record schema: one pass over the in-memory doc.

A builder reads each schema field from the document by fieldname, converts the value to
the field's type (`schemas.types` lists the mapping) and returns a dict that encodes as
is. It reads nothing but the document: attribute access for Frappe `Document`s and plain
objects, `.get()` for dicts and `frappe._dict`; child rows the same way. It never imports
Frappe and never touches the database.

Values it accepts per Avro type (anything else raises `BuildError` naming the field):
- string: str; numbers, dates and times become their `str()`; booleans "1"/"0"
- boolean: bool, numbers (non-zero = true), "0"/"1"/"true"/"false"/"" ; None = false
- int/long: int, integral float or Decimal, numeric strings; range-checked
- double: int, float, Decimal, numeric strings (NaN and infinities pass: Avro doubles hold them)
- decimal: int, float (via its shortest repr, `Decimal(str(value))`, never float
  arithmetic), Decimal, numeric strings; quantized to the scale with ROUND_HALF_UP and
  refused when it does not fit the precision
- date: date, datetime (its date), "YYYY-MM-DD[ time]"
- local-timestamp-micros: naive datetime (an aware one keeps its wall clock), date
  (midnight), "YYYY-MM-DD[ |T]HH:MM[:SS[.ffffff]]"
- time-micros: time, timedelta within a day (what MariaDB returns for TIME), "H:MM[:SS[.f]]"
For optional fields None is null, and so is "" except for strings; a missing attribute
is None. A missing child table is an empty list.

The schema is read once per builder: a builder is one (fieldname, converter,
nullability) per field.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from erpnext_streaming.schemas.errors import BuildError, SchemaError

Builder = Callable[[Any], dict]

_REQUIRED, _NULLABLE, _EMPTY_IS_NULL = 0, 1, 2
_TRUE = frozenset(("1", "true", "True", "yes", "Yes"))
_FALSE = frozenset(("0", "false", "False", "no", "No", ""))
_MIDNIGHT = time()
_INT_LIMIT = 1 << 64


class Invalid(Exception):
	"""A value a converter refuses; the record builder turns it into a BuildError with the field path."""


def _describe(value: Any) -> str:
	try:
		text = repr(value)
	except ValueError:  # an int beyond sys.get_int_max_str_digits()
		return f"a {type(value).__name__} too large to show"
	return text if len(text) <= 60 else text[:57] + "..."


def _required(what: str) -> Invalid:
	return Invalid(f"is required ({what}) but is empty")


def to_str(value: Any) -> str:
	if isinstance(value, str):
		return str(value)
	if isinstance(value, bool):
		return "1" if value else "0"
	if isinstance(value, (int, float, Decimal, date, time, timedelta)):
		try:
			return str(value)
		except ValueError:  # an int beyond sys.get_int_max_str_digits()
			raise Invalid(f"a {type(value).__name__} too large to write as text")
	if value is None:
		raise _required("text")
	raise Invalid(f"{_describe(value)} ({type(value).__name__}) is not text")


def to_bool(value: Any) -> bool:
	if value is None:
		return False
	if isinstance(value, (bool, int, float)):
		return value != 0
	if isinstance(value, Decimal):
		return not value.is_zero()
	if isinstance(value, str):
		text = value.strip()
		if text in _TRUE:
			return True
		if text in _FALSE:
			return False
	raise Invalid(f"{_describe(value)} is not a check value (0 or 1)")


def _int_converter(bits: int) -> Callable[[Any], int]:
	low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

	def to_int(value: Any) -> int:
		if type(value) is not int:
			value = _integral(value)
		if low <= value <= high:
			return value
		raise Invalid(f"{_describe(value)} does not fit a {bits}-bit integer")

	return to_int


def _integral(value: Any) -> int:
	if isinstance(value, bool):
		return int(value)
	if isinstance(value, str):
		try:
			value = Decimal(value.strip())
		except decimal.InvalidOperation:
			raise Invalid(f"{_describe(value)} is not a whole number")
	if isinstance(value, (int, float, Decimal)):
		try:
			whole = int(value) if abs(value) < _INT_LIMIT else None
		except (ValueError, OverflowError, decimal.InvalidOperation):
			whole = None
		if whole is not None and whole == value:
			return whole
	elif value is None:
		raise _required("a whole number")
	raise Invalid(f"{_describe(value)} is not a whole number (or too large)")


def to_float(value: Any) -> float:
	if type(value) is not float:
		try:
			if isinstance(value, str):
				value = float(value.strip())
			elif isinstance(value, (int, float, Decimal)):
				value = float(value)
			else:
				raise Invalid(f"{_describe(value)} is not a number")
		except (ValueError, OverflowError):
			raise Invalid(f"{_describe(value)} is not a number (or too large)")
	return value


@functools.cache
def decimal_converter(precision: int, scale: int) -> Callable[[Any], Decimal]:
	"""Exact decimal of a money value: `Decimal(str(value))` quantized to `scale` places."""
	context = decimal.Context(
		prec=precision, rounding=decimal.ROUND_HALF_UP, traps=[decimal.InvalidOperation]
	)
	quantum = Decimal(1).scaleb(-scale)

	def to_decimal(value: Any) -> Decimal:
		if isinstance(value, float):
			number = Decimal(repr(float(value)))  # its shortest repr, never float arithmetic
		elif isinstance(value, (int, Decimal)):  # bool included: 1 or 0
			number = Decimal(int(value) if isinstance(value, bool) else value)
		elif isinstance(value, str):
			try:
				number = Decimal(value.strip())
			except decimal.InvalidOperation:
				raise Invalid(f"{_describe(value)} is not an amount")
		elif value is None:
			raise _required("an amount")
		else:
			raise Invalid(f"{_describe(value)} ({type(value).__name__}) is not an amount")
		try:
			if not number.is_finite():
				raise decimal.InvalidOperation
			return context.quantize(number, quantum)
		except decimal.InvalidOperation:
			raise Invalid(f"{_describe(value)} does not fit decimal({precision},{scale})")

	return to_decimal


def _parse_time(text: str) -> time:
	parts = text.split(":")
	try:
		if len(parts) not in (2, 3):
			raise ValueError
		seconds, _, fraction = (parts[2] if len(parts) == 3 else "0").partition(".")
		if not all(p.isdigit() for p in (parts[0], parts[1], seconds, fraction or "0")) or len(fraction) > 6:
			raise ValueError
		return time(
			int(parts[0]), int(parts[1]), int(seconds), int(fraction.ljust(6, "0")) if fraction else 0
		)
	except ValueError:
		raise Invalid(f"{_describe(text)} is not a time (HH:MM:SS)")


def _parse_date(text: str) -> date:
	try:
		return date.fromisoformat(text)
	except ValueError:
		raise Invalid(f"{_describe(text)} is not a date (YYYY-MM-DD)")


def to_date(value: Any) -> date:
	if type(value) is date:
		return value
	if isinstance(value, datetime):
		return value.date()
	if isinstance(value, date):
		return date(value.year, value.month, value.day)
	if isinstance(value, str):
		return _parse_date(value.strip()[:10])
	raise Invalid(f"{_describe(value)} is not a date")


def to_datetime(value: Any) -> datetime:
	if isinstance(value, datetime):
		return value.replace(tzinfo=None) if value.tzinfo is not None else value
	if isinstance(value, date):
		return datetime(value.year, value.month, value.day)
	if isinstance(value, str):
		day, _, clock = value.strip().replace("T", " ", 1).partition(" ")
		return datetime.combine(_parse_date(day), _parse_time(clock.strip()) if clock.strip() else _MIDNIGHT)
	raise Invalid(f"{_describe(value)} is not a date and time")


def to_time(value: Any) -> time:
	if isinstance(value, timedelta):
		if value.days:  # 0 <= timedelta < 1 day; a negative one has days < 0
			raise Invalid(f"{value} is not a time of day")
		seconds = value.seconds
		return time(seconds // 3600, seconds // 60 % 60, seconds % 60, value.microseconds)
	if isinstance(value, datetime):
		return value.time()
	if isinstance(value, time):
		return value.replace(tzinfo=None) if value.tzinfo is not None else value
	if isinstance(value, str):
		return _parse_time(value.strip())
	raise Invalid(f"{_describe(value)} is not a time")


_LOGICAL = {
	("int", "date"): to_date,
	("long", "local-timestamp-micros"): to_datetime,
	("long", "time-micros"): to_time,
}
to_int32 = _int_converter(32)
to_int64 = _int_converter(64)
_PRIMITIVE = {
	"string": to_str,
	"boolean": to_bool,
	"int": to_int32,
	"long": to_int64,
	"double": to_float,
	"float": to_float,
}


def _converter(avro: Any, named: dict[str, Builder]) -> tuple[Callable[[Any], Any], int]:
	"""(converter, nullability) for a field type of a document or child record."""
	if isinstance(avro, list):
		branches = [b for b in avro if b != "null"]
		if len(branches) != 1 or len(avro) != 2:
			raise SchemaError(f'unsupported union {avro}: builders handle ["null", T] only')
		convert, _ = _converter(branches[0], named)
		return convert, _NULLABLE if branches[0] == "string" else _EMPTY_IS_NULL
	if isinstance(avro, str):
		if avro in _PRIMITIVE:
			return _PRIMITIVE[avro], _REQUIRED
	elif avro.get("logicalType") == "decimal":
		return decimal_converter(avro["precision"], avro.get("scale", 0)), _REQUIRED
	elif (avro["type"], avro.get("logicalType")) in _LOGICAL:
		return _LOGICAL[(avro["type"], avro.get("logicalType"))], _REQUIRED
	elif avro["type"] == "array" and isinstance(avro["items"], str) and avro["items"] in named:
		return _table_builder(named[avro["items"]]), _REQUIRED  # a child record defined earlier
	elif avro["type"] == "array" and isinstance(avro["items"], dict) and avro["items"]["type"] == "record":
		return _table_builder(record_builder(avro["items"], named)), _REQUIRED
	elif avro["type"] in _PRIMITIVE and "logicalType" not in avro:
		return _PRIMITIVE[avro["type"]], _REQUIRED
	raise SchemaError(f"builders do not support the Avro type {avro}")


def _table_builder(build_row: Builder) -> Callable[[Any], list]:
	def build_table(rows: Any) -> list:
		if rows is None or rows == "":
			return []
		if not isinstance(rows, (list, tuple)):
			raise Invalid(f"is not a child table (a list of rows) but {type(rows).__name__}")
		out = []
		for i, row in enumerate(rows):
			try:
				out.append(build_row(row))
			except BuildError as e:
				raise BuildError(e.reason, f"[{i}].{e.field}" if e.field else f"[{i}]")
		return out

	return build_table


def _getter(doc: Any) -> tuple[Callable[[str], Any], Any]:
	"""(get, fallback): `get(fieldname)` reads the value; when it gives None, `fallback` (if
	not None) is asked with getattr. Dicts and frappe._dict use `.get` only (getattr would
	find dict methods such as `items`); objects read their instance `__dict__` (where a
	Frappe Document keeps its fields) and fall back to getattr for properties and slots."""
	if isinstance(doc, dict):
		return doc.get, None
	attrs = getattr(doc, "__dict__", None)
	if attrs is None:
		return lambda fieldname: getattr(doc, fieldname, None), None
	return attrs.get, doc


def record_builder(record: dict, named: dict[str, Builder] | None = None) -> Builder:
	"""Compile a builder for an Avro record schema whose fields are Frappe fieldnames.

	`named` collects the builders of the records defined so far, so a later table of the
	same child doctype (a reference to the record by name) reuses its builder.
	"""
	named = {} if named is None else named
	plan = [(f["name"], *_converter(f["type"], named)) for f in record["fields"]]

	def build(doc: Any) -> dict:
		if doc is None or isinstance(doc, (str, bytes, int, float, list, tuple)):
			raise BuildError(f"is not a document or row but {type(doc).__name__}")
		get, fallback = _getter(doc)
		out = {}
		for fieldname, convert, nullable in plan:
			value = get(fieldname)
			if value is None and fallback is not None:
				value = getattr(fallback, fieldname, None)
			if nullable and (value is None or (nullable == _EMPTY_IS_NULL and value == "")):
				out[fieldname] = None
				continue
			try:
				out[fieldname] = convert(value)
			except Invalid as e:
				raise BuildError(str(e), fieldname)
			except BuildError as e:  # from a child table: prefix the table's fieldname
				raise BuildError(e.reason, fieldname + e.field)
		return out

	named[record["name"]] = named[record["name"].rpartition(".")[2]] = build
	return build
