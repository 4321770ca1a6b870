# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

from frappe.model.document import Document


class StreamingBackfill(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		checkpoint: DF.SmallText | None
		company: DF.Data | None
		emitted: DF.Int
		finished_at: DF.Datetime | None
		from_date: DF.Date | None
		kind: DF.Literal["Backfill", "Revaluation"]
		last_error: DF.SmallText | None
		name: DF.Int | None
		processed: DF.Int
		reference_doctype: DF.Link | None
		repost_item_valuation: DF.Data | None
		scope: DF.LongText | None
		skipped: DF.Int
		started_at: DF.Datetime | None
		status: DF.Literal["Queued", "Running", "Interrupted", "Failed", "Cancelled", "Completed"]
		to_date: DF.Date | None
		total: DF.Int
	# end: auto-generated types

	pass
