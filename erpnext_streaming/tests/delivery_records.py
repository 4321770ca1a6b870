"""Outbox records and delivery-queue helpers for the delivery FrappeTestCase tests."""

from datetime import datetime
from typing import Any

import frappe

from erpnext_streaming.constants import (
	BUNDLE_DOCTYPE,
	BUNDLE_TABLE,
	CURSOR_DOCTYPE,
	CURSOR_TABLE,
	EVENT_LOG_DOCTYPE,
	RECEIPT_DOCTYPE,
	Status,
)
from erpnext_streaming.delivery import messages
from erpnext_streaming.delivery.framing import FramingError
from erpnext_streaming.outbox.records import OutboxRecord


def outbox_record(
	ref: str,
	company: str,
	status: str = Status.QUEUED,
	prefix: str = "delivery-test",
	event_time: datetime | None = None,
):
	"""A GL Entry event with a tiny payload; Dead records carry a capture error."""
	return OutboxRecord(
		event_id=f"{prefix}-{ref}",
		event_type="posted",
		reference_doctype="GL Entry",
		reference_name=ref,
		company=company,
		event_time=event_time,
		topic="erpnext.gl-entry",
		message_key=company,
		schema_name="io.erpnext.streaming.GLEntryEvent",
		schema_version=1,
		schema_fingerprint="00",
		payload=b"\x01",
		status=status,
		last_error="capture failed" if status == Status.DEAD else "",
	)


def clear_delivery_tables() -> None:
	"""Empty the Event Log and the delivery queue inside the test's transaction (rolled back
	by tearDown), so what a test claims or counts is its own."""
	for doctype in (EVENT_LOG_DOCTYPE, BUNDLE_DOCTYPE, CURSOR_DOCTYPE, RECEIPT_DOCTYPE):
		frappe.db.delete(doctype)


class NoRegistry:
	"""A framer for reading bundles back in tests: no Schema Registry here. It records the
	rows it is asked to frame (only a Confluent route asks) and refuses them, so such an
	event is read as failed, never framed by a network call."""

	def __init__(self):
		self.asked: list[dict] = []

	def confluent(self, row: Any, body: bytes) -> bytes:
		self.asked.append(dict(row))
		raise FramingError("no Schema Registry in these tests")


def read_bundle(text: str, framer: Any = None) -> tuple[list, dict]:
	"""The messages of a bundle as the drainer reads them (`messages.read`): the ready
	`OutgoingMessage`s in order (value: the framed bytes; headers: a dict in header order)
	and the events that cannot be sent ({event log: Classified})."""
	ready: list = []
	failed: dict = {}
	messages.read(text, framer or NoRegistry(), ready, failed)
	return ready, failed


def bundle_rows() -> list[dict]:
	"""Every bundle in name order, with its events' Event Log names in order (`refs`) and
	the messages it holds read back (`ready`, `failed`: see `read_bundle`)."""
	rows = frappe.db.sql(
		f"SELECT `name`, `creation`, `company`, `events`, `messages` FROM `{BUNDLE_TABLE}` ORDER BY `name`",
		as_dict=True,
	)
	for row in rows:
		row["refs"] = messages.refs(row["messages"])
		row["ready"], row["failed"] = read_bundle(row["messages"])
	return rows


def bundle_of(event_log: int) -> int:
	"""The name of the bundle holding Event Log row `event_log`."""
	return next(b["name"] for b in bundle_rows() if event_log in b["refs"])


def cursor_rows() -> dict[str, dict]:
	"""{cursor name: its row}"""
	return {
		r["name"]: r
		for r in frappe.db.sql(
			f"SELECT `name`, `company`, `delivered_through`, `attempts`, `next_attempt_at`, `last_error`, "
			f"`lease_owner`, `lease_expires_at` FROM `{CURSOR_TABLE}`",
			as_dict=True,
		)
	}


class NoWake:
	"""A wake-up source that never wakes: the in-process drainer leaves once idle."""

	def wait(self, timeout: float) -> bool:
		import time

		time.sleep(min(timeout, 0.05))
		return False

	def pending(self) -> bool:
		return False

	def clear(self) -> None:
		pass


def in_process_drainer(**config: Any):
	"""The app's drainer on this connection, as the drainer job builds it, leaving once idle.
	No heartbeat: a test's rows and cursors are savepoints no other drainer can see."""
	import dataclasses

	from frappe.utils import now_datetime

	from erpnext_streaming import kafka_config
	from erpnext_streaming.constants import SETTINGS_DOCTYPE
	from erpnext_streaming.delivery import jobs
	from erpnext_streaming.delivery.drainer import Drainer
	from erpnext_streaming.delivery.environment import NoHeartbeat, SystemClock
	from erpnext_streaming.delivery.producer import KafkaProducer
	from erpnext_streaming.settings import StreamingConfig

	settings = StreamingConfig.from_doc(frappe.get_single(SETTINGS_DOCTYPE))
	producer_conf = kafka_config.producer_config(settings)
	drainer_config = dataclasses.replace(
		jobs.build_drainer_config(settings, producer_conf), idle_exit_seconds=0, poll_seconds=0.1, **config
	)
	return Drainer(
		db=frappe.db,
		producer_factory=lambda: KafkaProducer(producer_conf),
		wake=NoWake(),
		heartbeat=NoHeartbeat(),
		clock=SystemClock(now_datetime),
		config=drainer_config,
		policy=jobs.retry_policy(settings),
		framer=jobs.build_framer(settings, None),
	)
