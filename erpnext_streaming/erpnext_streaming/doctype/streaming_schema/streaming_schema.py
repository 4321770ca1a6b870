# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

from frappe.model.document import Document


class StreamingSchema(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		fingerprint: DF.Data | None
		reference_doctype: DF.Link | None
		schema: DF.LongText | None
		schema_name: DF.Data | None
		version: DF.Int
	# end: auto-generated types
