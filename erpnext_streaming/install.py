"""after_install / after_migrate: seed the event catalog with the built-in doctypes.

Defaults are added only for doctypes that exist on the site (ERPNext is optional) and
only when the catalog has no row for them yet: an admin's choices, including a
deliberately disabled or deleted row, are never overwritten (`seeded_doctypes` remembers
what was seeded once). Streaming stays
disabled until an admin enters the bootstrap servers and ticks Enabled.
"""

import frappe

from erpnext_streaming import catalog
from erpnext_streaming.constants import BUILTIN_BY_DOCTYPE, DEFAULT_TOPIC_PREFIX, SETTINGS_DOCTYPE
from erpnext_streaming.settings import split_field_list


def after_install():
	seed_catalog()


def after_migrate():
	seed_catalog()


def seed_catalog():
	settings = frappe.get_single(SETTINGS_DOCTYPE)
	installed = set(
		frappe.get_all("DocType", filters={"name": ("in", list(BUILTIN_BY_DOCTYPE))}, pluck="name")
	)
	seeded = split_field_list(settings.seeded_doctypes)
	rows = catalog.missing_default_rows(
		[r.document_type for r in settings.event_catalog],
		seeded,
		installed,
		settings.topic_prefix or DEFAULT_TOPIC_PREFIX,
	)
	if not rows:
		return
	for row in rows:
		settings.append("event_catalog", row)
	settings.seeded_doctypes = "\n".join([*seeded, *(r["document_type"] for r in rows)])
	settings.flags.ignore_permissions = True
	settings.save()
