"""STAND-IN for the Frappe framework in the pytest suite. This is NOT Frappe.

Only the APIs erpnext_streaming's glue calls, with Frappe v15 signatures and semantics
(see tests/standin/README.md). Real MariaDB, Redis and RQ are behind them.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

IS_STANDIN = True


class _dict(dict):
	"""frappe._dict: a dict with attribute access."""

	def __getattr__(self, key):
		return self.get(key)

	def __setattr__(self, key, value):
		self[key] = value

	def __delattr__(self, key):
		self.pop(key, None)


class ValidationError(Exception):
	pass


class PermissionError(Exception):
	pass


class DoesNotExistError(ValidationError):
	pass


class _Local(threading.local):
	pass


local = _Local()


def _reset_local() -> None:
	local.flags = _dict()
	local.cache = {}
	local.site = None
	local.conf = _dict()
	local.session = _dict(user="Administrator")
	local.roles = ["Administrator", "System Manager"]
	local.db = None
	local.error_log = []


_reset_local()


class _FlagsProxy:
	def __getattr__(self, key):
		return getattr(local.flags, key)

	def __setattr__(self, key, value):
		setattr(local.flags, key, value)


flags = _FlagsProxy()


class _LocalAttr:
	"""frappe.db / session / conf: werkzeug's LocalProxy over frappe.local, which forwards
	attribute reads AND writes to the current object."""

	def __init__(self, name):
		object.__setattr__(self, "name", name)

	def __getattr__(self, key):
		return getattr(getattr(local, self.name), key)

	def __setattr__(self, key, value):
		setattr(getattr(local, self.name), key, value)


db = _LocalAttr("db")  # frappe.db -> frappe.local.db
session = _LocalAttr("session")
conf = _LocalAttr("conf")


class CallbackManager:
	"""frappe.utils.CallbackManager: FIFO, no dedup."""

	__slots__ = ("_functions",)

	def __init__(self) -> None:
		self._functions: deque[Callable] = deque()

	def add(self, func: Callable) -> None:
		self._functions.append(func)

	def __call__(self, func: Callable) -> None:
		self.add(func)

	def run(self) -> None:
		while self._functions:
			self._functions.popleft()()

	def reset(self) -> None:
		self._functions.clear()


class RedisCache:
	"""frappe.cache (RedisWrapper): site-prefixed keys, pickled values, request-local copy."""

	def __init__(self, client) -> None:
		self.client = client

	def make_key(self, key: str) -> str:
		return f"{local.site}|{key}"

	def get_value(self, key, generator=None, user=None, expires=False, shared=False):
		key = self.make_key(key)
		if key in local.cache:
			return local.cache[key]
		raw = self.client.get(key)
		value = pickle.loads(raw) if raw is not None else None
		if value is None and generator:
			value = generator()
			self.client.set(key, pickle.dumps(value))
		if not expires:
			local.cache[key] = value
		return value

	def set_value(self, key, val, user=None, expires_in_sec=None, shared=False):
		key = self.make_key(key)
		if not expires_in_sec:
			local.cache[key] = val
		self.client.set(key, pickle.dumps(val), ex=expires_in_sec)

	def delete_value(self, keys, user=None, make_keys=True, shared=False):
		if not keys:
			return
		keys = keys if isinstance(keys, list | tuple) else (keys,)
		for key in keys:
			key = self.make_key(key) if make_keys else key
			local.cache.pop(key, None)
			self.client.delete(key)


cache: RedisCache | None = None


def get_site_path(*joins: str) -> str:
	"""A path in the site's folder; the stand-in's sites live under the temp dir, each with
	the `private/files` and `public/files` folders `bench new-site` makes."""
	import os
	import tempfile

	root = os.path.join(tempfile.gettempdir(), "standin-sites", local.site)
	for folder in ("private", "public"):
		os.makedirs(os.path.join(root, folder, "files"), exist_ok=True)
	return os.path.join(root, *joins)


def get_cached_doc(doctype: str, name: str | None = None):
	from frappe import standin

	return standin.get_single_doc(doctype)


def get_single(doctype: str):
	return get_cached_doc(doctype)


def get_meta(doctype: str, cached: bool = True):
	"""frappe.get_meta: a doctype's meta (here: the definitions the harness registered with
	`standin.register_doctype`, i.e. the app's doctype JSONs and the ERPNext subset)."""
	from frappe import standin

	return standin.get_meta(doctype)


def logger(module: str | None = None, with_more_info: bool = False, **kwargs) -> logging.Logger:
	return logging.getLogger(module or "frappe")


def log_error(
	title: str | None = None, message: str | None = None, reference_doctype=None, reference_name=None
):
	import traceback

	entry = _dict(
		method=title,
		error=message or traceback.format_exc(),
		reference_doctype=reference_doctype,
		reference_name=reference_name,
	)
	local.error_log.append(entry)
	logging.getLogger("frappe").error("%s: %s", title, entry.error)
	return entry


def get_traceback(with_context: bool = False) -> str:
	import traceback

	return traceback.format_exc()


def get_attr(method_string: str) -> Any:
	import importlib

	module, _, attr = method_string.rpartition(".")
	return getattr(importlib.import_module(module), attr)


def enqueue(
	method: str | Callable,
	queue: str = "default",
	timeout: int | None = None,
	event=None,
	is_async: bool = True,
	job_name: str | None = None,
	now: bool = False,
	enqueue_after_commit: bool = False,
	*,
	on_success=None,
	on_failure=None,
	at_front: bool = False,
	job_id: str | None = None,
	deduplicate: bool = False,
	**kwargs,
):
	from frappe.utils import background_jobs

	return background_jobs.enqueue(
		method,
		queue=queue,
		timeout=timeout,
		is_async=is_async,
		job_name=job_name,
		now=now,
		enqueue_after_commit=enqueue_after_commit,
		at_front=at_front,
		job_id=job_id,
		deduplicate=deduplicate,
		**kwargs,
	)


def parse_json(val):
	"""frappe.parse_json: JSON text -> value (dicts as _dict); anything else unchanged."""
	import json

	if isinstance(val, str):
		val = json.loads(val)
	if isinstance(val, dict):
		val = _dict(val)
	return val


def _(text: str, lang: str | None = None, context: str | None = None) -> str:
	return text


def throw(msg: str, exc: type[Exception] = ValidationError, title: str | None = None, **kwargs):
	raise exc(msg)


def whitelist(allow_guest: bool = False, xss_safe: bool = False, methods: list[str] | None = None):
	def decorator(fn):
		fn.whitelisted = True
		return fn

	return decorator


def get_roles(user: str | None = None) -> list[str]:
	return list(local.roles)


def only_for(roles, message: bool = False) -> None:
	roles = [roles] if isinstance(roles, str) else roles
	if local.flags.in_test or session.user == "Administrator":
		return
	if not set(roles) & set(get_roles()):
		raise PermissionError("Not permitted")
