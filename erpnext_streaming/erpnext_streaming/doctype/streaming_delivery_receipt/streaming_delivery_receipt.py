# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

from frappe.model.document import Document


class StreamingDeliveryReceipt(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		events: DF.Int
		name: DF.Int | None
		positions: DF.LongText | None
	# end: auto-generated types
