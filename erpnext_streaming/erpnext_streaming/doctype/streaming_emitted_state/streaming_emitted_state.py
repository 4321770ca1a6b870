# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

from frappe.model.document import Document


class StreamingEmittedState(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		reference_doctype: DF.Link | None
		reference_name: DF.DynamicLink | None
		state: DF.SmallText | None
	# end: auto-generated types
