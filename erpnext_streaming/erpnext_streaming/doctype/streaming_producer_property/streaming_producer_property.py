# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

from frappe.model.document import Document


class StreamingProducerProperty(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		parent: DF.Data
		parentfield: DF.Data
		parenttype: DF.Data
		property: DF.Data
		value: DF.Data
	# end: auto-generated types
