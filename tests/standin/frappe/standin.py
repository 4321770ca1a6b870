"""Set-up API of the stand-in (no Frappe counterpart): sites, the database, singles.

`init_site(site, db_params, redis_url)` is the stand-in's `frappe.init` + `frappe.connect`.
`StandinDatabase` mirrors the transaction semantics of frappe/database/database.py (v15):
commit() resets before/after_rollback, runs before_commit, COMMITs, begins, runs
after_commit; rollback() resets the commit callbacks, ROLLBACKs, begins, runs
after_rollback; rollback(save_point=...) runs no callbacks.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pymysql
import redis

import frappe
from frappe import CallbackManager, _dict

_singles: dict[str, dict] = {}
_doctypes: dict[str, dict] = {}


class StandinDatabase:
	def __init__(self, **params: Any) -> None:
		self.params = params
		self._conn = pymysql.connect(autocommit=False, charset="utf8mb4", **params)
		self._cursor = self._conn.cursor()
		self.before_commit = CallbackManager()
		self.after_commit = CallbackManager()
		self.before_rollback = CallbackManager()
		self.after_rollback = CallbackManager()
		self.transaction_writes = 0
		self.begin()

	def sql(self, query: str, values: Any = (), as_dict: bool = False, as_list: bool = False) -> Any:
		if values != ():
			self._cursor.execute(query, values)
		else:
			self._cursor.execute(query)
		if not self._cursor.description:
			return ()
		rows = self._cursor.fetchall()
		if as_dict:
			columns = [d[0] for d in self._cursor.description]
			return [_dict(zip(columns, row, strict=True)) for row in rows]
		if as_list:
			return [list(r) for r in rows]
		return rows

	def begin(self) -> None:
		self.sql("START TRANSACTION")

	def commit(self) -> None:
		self.before_rollback.reset()
		self.after_rollback.reset()
		self.before_commit.run()
		self.sql("commit")
		self.begin()
		self.after_commit.run()

	def rollback(self, *, save_point: str | None = None) -> None:
		if save_point:
			self.sql(f"rollback to savepoint {save_point}")
			return
		self.before_commit.reset()
		self.after_commit.reset()
		self.before_rollback.run()
		self.sql("rollback")
		self.begin()
		self.after_rollback.run()

	def savepoint(self, save_point: str) -> None:
		self.sql(f"savepoint {save_point}")

	def release_savepoint(self, save_point: str) -> None:
		self.sql(f"release savepoint {save_point}")

	def close(self) -> None:
		try:
			self._conn.close()
		except Exception:
			pass


class SingleDoc(_dict):
	"""A Single document's values: attribute access, child tables as lists of _dict."""

	def get_password(self, fieldname: str, raise_exception: bool = True) -> str | None:
		return self.get(fieldname)


def init_site(site: str, db_params: dict | None, redis_url: str, conf: dict | None = None) -> None:
	"""frappe.init + frappe.connect for the stand-in."""
	frappe._reset_local()
	frappe.local.site = site
	frappe.local.conf = _dict(conf or {}, db_params=db_params, redis_url=redis_url)
	# Frappe's queue Redis (RQ and the wake-up list); a test may point it elsewhere
	frappe.local.conf.setdefault("redis_queue", redis_url)
	frappe.cache = frappe.RedisCache(redis.Redis.from_url(redis_url))
	if db_params:
		frappe.local.db = StandinDatabase(**db_params)


def destroy() -> None:
	if frappe.local.db is not None:
		frappe.local.db.close()
	frappe._reset_local()


def _single_key(doctype: str) -> str:
	return f"standin|{frappe.local.site}|single|{doctype}"


def set_single(doctype: str, values: dict, shared: bool = True) -> None:
	"""Register a Single's values (what Frappe would read from tabSingles). `shared`: also
	in the site's Redis, where every process of the site reads the latest values, as every
	Frappe process reads tabSingles (a job enqueued by a worker sees a test's later save)."""
	_singles[doctype] = copy.deepcopy(values)
	if shared and frappe.cache is not None:
		frappe.cache.set_value(_single_key(doctype), json.dumps(values, default=str))


def registered_singles() -> dict[str, dict]:
	return copy.deepcopy(_singles)


def get_single_doc(doctype: str) -> SingleDoc:
	stored = frappe.cache.get_value(_single_key(doctype)) if frappe.cache is not None else None
	values = json.loads(stored) if stored else copy.deepcopy(_singles.get(doctype, {}))
	for key, value in list(values.items()):
		if isinstance(value, list):
			values[key] = [_dict(row) for row in value]
	return SingleDoc(values, doctype=doctype, name=doctype)


class Meta(_dict):
	"""frappe.model.meta.Meta, the part the glue reads: fields, table fields, has_field."""

	def get_table_fields(self) -> list[_dict]:
		return [f for f in self.fields if f.fieldtype in ("Table", "Table MultiSelect")]

	def has_field(self, fieldname: str) -> bool:
		return any(f.fieldname == fieldname for f in self.fields)

	def get_field(self, fieldname: str) -> _dict | None:
		return next((f for f in self.fields if f.fieldname == fieldname), None)


def register_doctype(doctype: dict) -> None:
	"""Make a doctype definition (a doctype JSON's shape) known to `frappe.get_meta`."""
	_doctypes[doctype["name"]] = copy.deepcopy(doctype)


def get_meta(doctype: str) -> Meta:
	if doctype not in _doctypes:
		raise frappe.DoesNotExistError(f"DocType {doctype} not found")
	definition = copy.deepcopy(_doctypes[doctype])
	definition["fields"] = [_dict(f) for f in definition.get("fields", [])]
	return Meta(definition)
