"""What the outbox stores and reports: an event to write (`OutboxRecord`), the Event Log's
columns, where a message landed (`Published`), a row that was not delivered (`Unsent`).

The write path, the delivery queue (delivery/bundles.py) and the Event Log outcomes all
read these, so they live apart from all three.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo

from erpnext_streaming.constants import Encoding, Status

SEQUENCE_TABLE = "tabStreaming Company Sequence"
# tabStreaming Company Sequence.name of events without a company (a Frappe name cannot be empty)
NO_COMPANY_BUCKET = "-"
LAST_ERROR_LIMIT = 2000
SYSTEM_USER = "Administrator"

COLUMNS = (
	"name",
	"creation",
	"modified",
	"modified_by",
	"owner",
	"docstatus",
	"idx",
	"event_id",
	"status",
	"event_type",
	"reference_doctype",
	"reference_name",
	"company",
	"event_time",
	"topic",
	"message_key",
	"company_sequence",
	"schema_name",
	"schema_version",
	"schema_fingerprint",
	"encoding",
	"attempts",
	"payload",
	"last_error",
)
_STANDARD_COLUMNS = ("name", "creation", "modified", "modified_by", "owner", "docstatus", "idx")
# what a drainer needs to build a message: name, creation and every column `write` fills
DELIVERY_COLUMNS = ("name", "creation", *(c for c in COLUMNS if c not in _STANDARD_COLUMNS))


@dataclass(frozen=True, slots=True)
class MessageContext:
	"""What a message's headers say beyond the row: the site (`ce_source`) and its time
	zone (`ce_time`'s offset). Frappe glue: `emitters.handler.message_context()`."""

	site: str = ""
	time_zone: tzinfo = UTC


NO_CONTEXT = MessageContext()


@dataclass(slots=True)
class OutboxRecord:
	"""One event ready for the outbox: identity, routing, schema and the encoded bytes."""

	event_id: str
	event_type: str
	reference_doctype: str
	reference_name: str
	company: str
	event_time: datetime | None
	topic: str
	message_key: str
	schema_name: str
	schema_version: int
	schema_fingerprint: str
	payload: bytes
	status: str = Status.QUEUED
	last_error: str = ""
	encoding: str = Encoding.DEFAULT  # how the drainer frames it (constants.Encoding)


@dataclass(frozen=True, slots=True)
class Lease:
	owner: str
	until: datetime


@dataclass(frozen=True, slots=True)
class Published:
	"""Where a message landed: the row's own event (Sent) or its dead-letter copy."""

	name: int
	partition: int
	offset: int


@dataclass(frozen=True, slots=True)
class Unsent:
	"""A row that was not delivered: Failed (with its company's next attempt, UTC from the
	database's clock) or Dead."""

	name: int
	status: str
	attempts: int
	last_error: str
	next_attempt_at: datetime | None = None
	dead_letter: Published | None = None  # Dead rows whose copy is already on the dead-letter topic


def bucket(company: str) -> str:
	"""The company counter (and delivery cursor) of `company`: a Frappe name cannot be empty."""
	return company or NO_COMPANY_BUCKET


def truncate_error(text: str | None) -> str:
	text = text or ""
	return text if len(text) <= LAST_ERROR_LIMIT else text[: LAST_ERROR_LIMIT - 1] + "…"


def decode_payload(stored: str) -> bytes:
	"""The stored base64 text as bytes."""
	return base64.b64decode(stored)
