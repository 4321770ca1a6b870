"""STAND-IN for frappe.utils.password (NOT Frappe): the site's encryption key."""

from __future__ import annotations


def get_encryption_key() -> str:
	"""frappe.utils.password.get_encryption_key: site_config `encryption_key` (here: site conf,
	with a fixed test default; Frappe generates and stores one when it is missing)."""
	import frappe

	return frappe.local.conf.get("encryption_key") or "standin-encryption-key"
