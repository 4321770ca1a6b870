"""STAND-IN for frappe.utils (NOT Frappe): the helpers the glue imports."""

from __future__ import annotations

from datetime import datetime

from frappe import CallbackManager


def now_datetime() -> datetime:
	return datetime.now()


def cint(value, default: int = 0) -> int:
	try:
		return int(float(value))
	except (TypeError, ValueError):
		return default


def get_system_timezone() -> str:
	"""frappe.utils.get_system_timezone: System Settings' time zone (here: site config
	`time_zone`, default UTC)."""
	import frappe

	return frappe.local.conf.get("time_zone") or "UTC"
