"""Helpers for the bench tests."""

from contextlib import contextmanager

import frappe


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
