"""Helpers for the bench tests."""

from contextlib import contextmanager
from io import BytesIO

import frappe
from fastavro import schemaless_reader

from erpnext_streaming.constants import RECEIPT_TABLE


@contextmanager
def acting_as(user: str):
	"""Run as `user` with permission checks on.

	`frappe.only_for` skips its role check while `frappe.flags.in_test` is set (Frappe v15,
	frappe/__init__.py), which `bench run-tests` sets; a permission test must clear it.
	"""
	in_test = frappe.flags.in_test
	frappe.set_user(user)
	frappe.flags.in_test = False
	try:
		yield
	finally:
		frappe.flags.in_test = in_test
		frappe.set_user("Administrator")


def ensure_user(email: str, roles: tuple[str, ...] = ()) -> str:
	if not frappe.db.exists("User", email):
		user = frappe.get_doc(
			{"doctype": "User", "email": email, "first_name": email.split("@")[0], "send_welcome_email": 0}
		)
		user.insert(ignore_permissions=True)
		if roles:
			user.add_roles(*roles)
	return email


SAVEPOINT = "erpnext_streaming_test_chunk"


@contextmanager
def commits_as_savepoints():
	"""Let code that commits per chunk (backfill, replay, requeue, revaluation) run inside the
	test's transaction, which tearDown rolls back: `frappe.db.commit()` runs the before_commit
	callbacks (as Frappe's does) and moves a savepoint instead of committing; after_commit
	callbacks (the drainer wake-up) are dropped, so no job reaches the bench's queues;
	`frappe.db.rollback()` goes back to the last such "commit"."""
	db = frappe.local.db  # the object, not the proxy: rollback to a savepoint calls its class

	def commit():
		db.before_rollback.reset()
		db.after_rollback.reset()
		db.before_commit.run()
		db.sql(f"savepoint {SAVEPOINT}")
		db.after_commit.reset()

	def rollback(*, save_point=None, **kwargs):
		if save_point:
			return type(db).rollback(db, save_point=save_point)
		db.before_commit.reset()
		db.after_commit.reset()
		db.sql(f"rollback to savepoint {SAVEPOINT}")

	db.sql(f"savepoint {SAVEPOINT}")
	db.commit, db.rollback = commit, rollback
	try:
		yield
	finally:
		del db.commit, db.rollback


class FailingDatabase:
	"""frappe.db that raises `error` instead of its `fail_at`-th commit (mid-chunk)."""

	def __init__(self, db, fail_at: int, error: BaseException):
		self.db, self.fail_at, self.error, self.commits = db, fail_at, error, 0

	def sql(self, *args, **kwargs):
		return self.db.sql(*args, **kwargs)

	def commit(self):
		self.commits += 1
		if self.commits == self.fail_at:
			raise self.error
		self.db.commit()

	def rollback(self, *args, **kwargs):
		self.db.rollback(*args, **kwargs)

	def __getattr__(self, name):
		return getattr(self.db, name)


def enable_streaming(**values) -> None:
	"""Streaming Settings switched on with the default catalog (plus `values`), nothing buffered.

	Bench tests never commit, so nothing reaches a broker; the bootstrap list only has to
	be valid."""
	from erpnext_streaming import catalog
	from erpnext_streaming.constants import SETTINGS_DOCTYPE
	from erpnext_streaming.emitters import handler

	rows = values.pop("event_catalog", None) or catalog.default_catalog_rows()
	settings = frappe.get_single(SETTINGS_DOCTYPE)
	settings.update(
		{"enabled": 1, "bootstrap_servers": "127.0.0.1:9092", "topic_prefix": "erpnext", **values}
	)
	settings.set("event_catalog", rows)
	settings.save()
	handler.clear()


def decode(payload: bytes, schema, reader=None) -> dict:
	"""The record in Avro `payload`, written with `schema`, read as `reader` (default: the same schema)."""
	return schemaless_reader(BytesIO(payload), schema.parsed, reader.parsed if reader else None)


def unsettled(db) -> int:
	"""Events delivered whose Event Log rows are not marked Sent yet."""
	return int(db.sql(f"SELECT COALESCE(SUM(`events`), 0) FROM `{RECEIPT_TABLE}`")[0][0] or 0)
