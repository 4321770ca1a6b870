"""Exceptions of the schema layer and the payload builders.

The capture path (another module) turns any `EventDataError` into a dead-letter row with
its message, so each one carries a human-readable reason naming the field at fault.
"""

from __future__ import annotations


class SchemaError(Exception):
	"""A shipped or derived schema is missing, malformed or inconsistent."""


class UnknownSchemaError(SchemaError, LookupError):
	"""No schema for this doctype (or this version of it)."""


class EventDataError(ValueError):
	"""A document cannot become a valid event record. `field` is the dotted path at fault."""

	def __init__(self, reason: str, field: str = ""):
		super().__init__(f"{field}: {reason}" if field else reason)
		self.reason = reason
		self.field = field


class BuildError(EventDataError):
	"""A builder met a value it cannot convert to the schema's type (or a malformed child table)."""


class EncodeError(EventDataError):
	"""fastavro refused the record (raised by the serializer, with fastavro's message)."""
