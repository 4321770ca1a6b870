# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

from frappe.model.document import Document


class StreamingDeliveryCursor(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		attempts: DF.Int
		company: DF.Data | None
		last_error: DF.SmallText | None
		lease_expires_at: DF.Datetime | None
		lease_owner: DF.Data | None
		next_attempt_at: DF.Datetime | None
	# end: auto-generated types
