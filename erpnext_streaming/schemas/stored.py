"""Derived schemas stored by fingerprint (`tabStreaming Schema`).

A schema derived from an admin-added doctype's meta changes when the doctype does (a
Customize Form change). Events already written name the old version by its fingerprint,
and a consumer needs its schema to decode them, the drainer to register it with a
Schema Registry. So every derived schema is stored when first used, in the transaction
that uses it, and never changes (its name is its fingerprint).
"""

from __future__ import annotations

import json
from datetime import datetime

from erpnext_streaming.outbox.mariadb import Database
from erpnext_streaming.schemas.registry import EventSchema

TABLE = "`tabStreaming Schema`"
_COLUMNS = "`reference_doctype`, `version`, `schema`"


def store(db: Database, schema: EventSchema, now: datetime, user: str = "Administrator") -> None:
	"""Keep `schema` (idempotent: a fingerprint names one schema for ever)."""
	db.sql(
		f"INSERT IGNORE INTO {TABLE} (`name`, `creation`, `modified`, `owner`, `modified_by`, `docstatus`, "
		f"`idx`, `fingerprint`, `schema_name`, {_COLUMNS}) VALUES (%s, %s, %s, %s, %s, 0, 0, %s, %s, %s, %s, %s)",
		(
			schema.fingerprint, now, now, user, user, schema.fingerprint, schema.name,
			schema.doctype, schema.version, json.dumps(schema.schema, separators=(",", ":")),
		),
	)  # fmt: skip


def load(db: Database, fingerprint: str) -> EventSchema | None:
	rows = db.sql(f"SELECT {_COLUMNS} FROM {TABLE} WHERE `name` = %s", (fingerprint,))
	return _schema(*rows[0]) if rows else None


def all_stored(db: Database) -> list[EventSchema]:
	return [_schema(*row) for row in db.sql(f"SELECT {_COLUMNS} FROM {TABLE} ORDER BY `creation`, `name`")]


def _schema(doctype: str, version: int, text: str) -> EventSchema:
	return EventSchema.build(json.loads(text), doctype, int(version), f"stored:{doctype}")
