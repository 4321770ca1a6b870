"""Outbox records for the delivery FrappeTestCase tests."""

from erpnext_streaming import outbox
from erpnext_streaming.constants import Status


def outbox_record(ref: str, company: str, status: str = Status.QUEUED, prefix: str = "delivery-test"):
	"""A GL Entry event with a tiny payload; Dead records carry a capture error."""
	return outbox.OutboxRecord(
		event_id=f"{prefix}-{ref}",
		event_type="posted",
		reference_doctype="GL Entry",
		reference_name=ref,
		company=company,
		event_time=None,
		topic="erpnext.gl-entry",
		message_key=company,
		schema_name="io.erpnext.streaming.GLEntryEvent",
		schema_version=1,
		schema_fingerprint="00",
		payload=b"\x01",
		status=status,
		last_error="capture failed" if status == Status.DEAD else "",
	)
