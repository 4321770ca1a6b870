# Copyright (c) 2026, erpnext_streaming developers and contributors
# License: MIT. See LICENSE

import frappe
from frappe.model.document import Document
from frappe.utils import now_datetime

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE
from erpnext_streaming.outbox.outcomes import EVENT_LOG_INDEXES, clear_old_logs


class StreamingEventLog(Document):
	# begin: auto-generated types
	# This code is auto-generated. Do not modify anything in this block.

	from typing import TYPE_CHECKING

	if TYPE_CHECKING:
		from frappe.types import DF

		attempts: DF.Int
		company: DF.Data | None
		dead_lettered_at: DF.Datetime | None
		encoding: DF.Data | None
		event_id: DF.Data | None
		event_time: DF.Datetime | None
		event_type: DF.Data | None
		kafka_partition: DF.Int
		last_error: DF.SmallText | None
		lease_expires_at: DF.Datetime | None
		lease_owner: DF.Data | None
		message_key: DF.Data | None
		name: DF.Int | None
		next_attempt_at: DF.Datetime | None
		payload: DF.LongText | None
		reference_doctype: DF.Link | None
		reference_name: DF.DynamicLink | None
		schema_fingerprint: DF.Data | None
		schema_name: DF.Data | None
		schema_version: DF.Int
		sent_at: DF.Datetime | None
		status: DF.Literal["Queued", "Sent", "Failed", "Dead"]
		topic: DF.Data | None
	# end: auto-generated types

	@staticmethod
	def clear_old_logs(days: int = 30) -> None:
		"""Log Settings retention: delete Sent rows older than `days`; Dead letters stay until resolved."""
		clear_old_logs(frappe.db, days, now_datetime())


def on_doctype_update():
	"""Composite indexes the drainer's dead-letter queries use (outbox.outcomes.EVENT_LOG_INDEXES)."""
	for index_name, fields in EVENT_LOG_INDEXES.items():
		frappe.db.add_index(EVENT_LOG_DOCTYPE, list(fields), index_name)
