"""STAND-IN for frappe.model.document (NOT Frappe): only so controller modules import.

The stand-in never instantiates controllers; tests call the module-level whitelisted
functions of a controller module (e.g. Streaming Settings' `test_connection`)."""

from __future__ import annotations


class Document:
	pass
