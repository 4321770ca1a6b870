"""STAND-IN for frappe.model (NOT Frappe)."""
