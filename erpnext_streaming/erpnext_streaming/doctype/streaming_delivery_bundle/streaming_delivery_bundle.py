# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

import frappe
from frappe.model.document import Document

from erpnext_streaming.constants import BUNDLE_DOCTYPE
from erpnext_streaming.delivery import bundles


class StreamingDeliveryBundle(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		company: DF.Data | None
		events: DF.Int
		messages: DF.LongText | None
		name: DF.Int | None
	# end: auto-generated types


def on_doctype_update():
	"""The drainer reads each company's bundles in name order (bundles.BUNDLE_INDEXES)."""
	for index_name, fields in bundles.BUNDLE_INDEXES.items():
		frappe.db.add_index(BUNDLE_DOCTYPE, list(fields), index_name)
