"""Names, defaults and the built-in event catalog, in one place.

Everything that more than one module needs to agree on lives here: doctype and table
names, Event Log statuses, the lifecycle events the app can stream, and the defaults
for the built-in ERPNext doctypes. This module imports nothing
from Frappe so the hot path, the delivery core and the pytest suite can share it.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

SETTINGS_DOCTYPE = "Streaming Settings"
EVENT_LOG_DOCTYPE = "Streaming Event Log"
EVENT_LOG_TABLE = f"tab{EVENT_LOG_DOCTYPE}"
# Frappe's autoincrement naming draws names from this MariaDB sequence
# (frappe/database/sequence.py: scrub(doctype + "_id_seq"), nocache, nocycle).
EVENT_LOG_SEQUENCE = "streaming_event_log_id_seq"
# the state the stream last emitted per document (emitters/capture.py, change events)
EMITTED_STATE_TABLE = "tabStreaming Emitted State"
# the delivery queue (delivery/bundles.py): one bundle per transaction and company, the
# per-company cursors, and the receipts of delivered batches not yet settled in the log
BUNDLE_DOCTYPE = "Streaming Delivery Bundle"
BUNDLE_TABLE = f"tab{BUNDLE_DOCTYPE}"
BUNDLE_SEQUENCE = "streaming_delivery_bundle_id_seq"
CURSOR_DOCTYPE = "Streaming Delivery Cursor"
CURSOR_TABLE = f"tab{CURSOR_DOCTYPE}"
RECEIPT_DOCTYPE = "Streaming Delivery Receipt"
RECEIPT_TABLE = f"tab{RECEIPT_DOCTYPE}"
RECEIPT_SEQUENCE = "streaming_delivery_receipt_id_seq"

DEFAULT_TOPIC_PREFIX = "erpnext"
DEFAULT_DEAD_LETTER_TOPIC = "erpnext.dead-letter"
DEFAULT_CLIENT_ID = "erpnext-streaming"

# Delivery tuning defaults (Streaming Settings, "Delivery" section).
# A batch is claimed, produced and recorded as one: its fixed costs (the claim's statements,
# the flush's round trip, the receipt) are paid per batch, so a large batch drains faster;
# 10,000 events hold about 10 MB of messages in the drainer.
DEFAULT_BATCH_SIZE = 10_000
DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_BACKOFF_BASE_SECONDS = 5
DEFAULT_BACKOFF_CAP_SECONDS = 3600
# Frappe's long queue times a job out after 1500 s; the drainer leaves before that.
LONG_QUEUE_TIMEOUT_SECONDS = 1500
DEFAULT_DRAINER_MAX_RUNTIME_SECONDS = 1200
DEFAULT_DRAINER_SLICE_SECONDS = 60
DEFAULT_LEASE_SECONDS = 120


# A large event travels as ordered parts (delivery/parts.py, consumer/parts.py; the header
# contract: docs/consumer-guide.md, "Large events"): every part carries the event's own
# headers plus these three. `es_part`: "i/n" (1-based); `es_parts_checksum`: SHA-256 (hex)
# of the whole value; `es_part_of`: the event id (ce_id).
PART_HEADER = "es_part"
PARTS_CHECKSUM_HEADER = "es_parts_checksum"
PART_OF_HEADER = "es_part_of"
PART_HEADERS = (PART_HEADER, PARTS_CHECKSUM_HEADER, PART_OF_HEADER)


class Status:
	"""Streaming Event Log states. Transitions live in `delivery.state`."""

	QUEUED = "Queued"
	SENT = "Sent"
	FAILED = "Failed"
	DEAD = "Dead"

	ALL = (QUEUED, SENT, FAILED, DEAD)
	PENDING = (QUEUED, FAILED)
	REQUEUEABLE = (FAILED, DEAD)


class Encoding:
	"""How the drainer frames an event's Avro bytes as the Kafka message value.

	Capture always stores plain (schemaless) Avro in the Event Log, inside the user's
	transaction and without any network call; the row records the encoding, and the
	drainer frames the message at publish time (`delivery/framing.py`).
	"""

	SCHEMALESS = "Schemaless Avro"  # the Avro body alone; the schema travels in the headers
	SINGLE_OBJECT = "Single-object Avro"  # C3 01 + 8-byte CRC-64-AVRO fingerprint + body
	CONFLUENT = "Confluent Schema Registry"  # 00 + 4-byte schema id (big-endian) + body

	ALL = (SCHEMALESS, SINGLE_OBJECT, CONFLUENT)
	DEFAULT = SCHEMALESS
	# content-type header of each (the schema headers are sent with all three)
	CONTENT_TYPE = MappingProxyType(
		{
			SCHEMALESS: "application/avro",
			SINGLE_OBJECT: "application/avro; encoding=single-object",
			CONFLUENT: "application/avro; encoding=confluent",
		}
	)


# confluent_kafka.schema_registry's subject name strategies, by their Java names
SUBJECT_NAME_STRATEGIES = ("TopicRecordNameStrategy", "TopicNameStrategy", "RecordNameStrategy")
DEFAULT_SUBJECT_NAME_STRATEGY = "TopicRecordNameStrategy"


class Kind:
	"""The catalog switches: which families of lifecycle events a doctype streams."""

	SUBMIT = "submit"
	CANCEL = "cancel"
	UPDATE_AFTER_SUBMIT = "update_after_submit"
	CHANGE = "change"

	ALL = (SUBMIT, CANCEL, UPDATE_AFTER_SUBMIT, CHANGE)
	# Streaming Event Catalog checkbox fieldname for each kind.
	CATALOG_FIELD = MappingProxyType(
		{
			SUBMIT: "on_submit",
			CANCEL: "on_cancel",
			UPDATE_AFTER_SUBMIT: "on_update_after_submit",
			CHANGE: "on_change",
		}
	)


@dataclass(frozen=True)
class Trigger:
	"""One Frappe document method that produces one kind of event.

	`method` is the doc_events key Frappe calls the handler with; `event_type` is what the
	consumer sees (the envelope's `event_type`, CloudEvents `ce_type` suffix).
	"""

	method: str
	kind: str
	event_type: str


class Coalesce:
	"""How a transaction's change events of one document are reduced at commit."""

	LAST = "last"  # only the last state (Sales Invoice status/outstanding)
	PER_STATUS = "per_status"  # last state of each run of one status: no transition is lost


@dataclass(frozen=True)
class DoctypeSpec:
	"""How a doctype streams: its triggers, catalog description and change-event rules.

	`state_fields` define a change (kind CHANGE) event: one is emitted only when their
	values differ from the state the stream last emitted for the document (an earlier
	event of the same transaction, else the Streaming Emitted State row); `coalesce` says
	how the remaining change events of one document are reduced at commit. Change events of
	drafts (docstatus 0) are not business events and are not emitted unless `drafts`
	(Job Card: its status moves through Open, Work In Progress and Completed before submit).
	The state fields are also part of the event id (`emitters.envelope.event_id`).
	"""

	doctype: str
	triggers: tuple[Trigger, ...]
	description: str
	state_fields: tuple[str, ...] = ()
	coalesce: str = Coalesce.LAST
	drafts: bool = False

	@property
	def kinds(self) -> tuple[str, ...]:
		return tuple(dict.fromkeys(t.kind for t in self.triggers))


SUBMITTED = Trigger("on_submit", Kind.SUBMIT, "submitted")
CANCELLED = Trigger("on_cancel", Kind.CANCEL, "cancelled")
UPDATED_AFTER_SUBMIT = Trigger("on_update_after_submit", Kind.UPDATE_AFTER_SUBMIT, "updated_after_submit")
POSTED = Trigger("on_submit", Kind.SUBMIT, "posted")

# The built-in doctypes. Facts behind each trigger list:
# ../shared/reference/frappe-erpnext-v15-facts.md ("Document events", "ERPNext ledger
# behaviour"): ledger rows (GL, stock and payment ledger: erpnext/accounts/utils.py
# create_payment_ledger_entry) are inserted with submit (on_submit fires, also for reversal
# rows on cancel) and never see on_cancel; status and progress of invoices and work
# orders move through db_set (on_change only); Job Card drafts change through save().
BUILTIN_SPECS: tuple[DoctypeSpec, ...] = (
	DoctypeSpec(
		doctype="Sales Invoice",
		triggers=(
			SUBMITTED,
			CANCELLED,
			UPDATED_AFTER_SUBMIT,
			Trigger("on_change", Kind.CHANGE, "status_changed"),
		),
		description=(
			"Invoice submitted, cancelled or updated after submit; status and outstanding "
			"amount changes (payments, returns) as status_changed, last state per transaction."
		),
		state_fields=("status", "outstanding_amount"),
		coalesce=Coalesce.LAST,
	),
	DoctypeSpec(
		doctype="GL Entry",
		triggers=(POSTED,),
		description=(
			"Every general ledger row as it is posted, including the reversal rows of a cancelled "
			"voucher (is_cancelled = 1). Join on voucher_type + voucher_no: row names are temporary."
		),
	),
	DoctypeSpec(
		doctype="Stock Ledger Entry",
		triggers=(POSTED,),
		description=(
			"Every stock ledger row with its final valuation (qty_after_transaction, valuation_rate, "
			"stock_value), including reversal rows of a cancelled voucher (is_cancelled = 1)."
		),
	),
	DoctypeSpec(
		doctype="Work Order",
		triggers=(
			SUBMITTED,
			CANCELLED,
			Trigger("on_update_after_submit", Kind.CHANGE, "progressed"),
			Trigger("on_change", Kind.CHANGE, "progressed"),
		),
		description=(
			"Work order submitted or cancelled; progress (status, produced and transferred qty, "
			"process loss) as progressed, last state per transaction, never dropping a status change."
		),
		state_fields=("status", "produced_qty", "material_transferred_for_manufacturing", "process_loss_qty"),
		coalesce=Coalesce.PER_STATUS,
	),
	DoctypeSpec(
		doctype="Job Card",
		triggers=(
			SUBMITTED,
			CANCELLED,
			Trigger("on_update", Kind.CHANGE, "status_changed"),
			Trigger("on_change", Kind.CHANGE, "status_changed"),
		),
		description=(
			"Job card submitted or cancelled; status and completed qty changes of drafts "
			"(Open, Work In Progress, On Hold, Completed), correlated by work_order + operation."
		),
		state_fields=("status", "total_completed_qty"),
		coalesce=Coalesce.PER_STATUS,
		drafts=True,
	),
	DoctypeSpec(
		doctype="Payment Entry",
		triggers=(SUBMITTED, CANCELLED, UPDATED_AFTER_SUBMIT),
		description=(
			"Payment submitted, cancelled or updated after submit. What it does to receivables "
			"travels as Payment Ledger Entry rows and the invoices' status_changed events."
		),
	),
	DoctypeSpec(
		doctype="Payment Ledger Entry",
		triggers=(POSTED,),
		description=(
			"Every payment ledger row as it is posted (ERPNext's source of outstanding amounts). A cancel "
			"posts reversal rows with delinked = 1 that delink the originals: outstanding per "
			"against_voucher_no = sum of amount of the rows not delinked."
		),
	),
)

# Any submittable doctype an admin adds to the catalog streams these.
GENERIC_TRIGGERS: tuple[Trigger, ...] = (SUBMITTED, CANCELLED, UPDATED_AFTER_SUBMIT)

BUILTIN_BY_DOCTYPE: dict[str, DoctypeSpec] = {s.doctype: s for s in BUILTIN_SPECS}


def spec_for(doctype: str) -> DoctypeSpec:
	"""The built-in spec of a doctype, or the generic one for admin-added doctypes."""
	return BUILTIN_BY_DOCTYPE.get(doctype) or DoctypeSpec(
		doctype=doctype,
		triggers=GENERIC_TRIGGERS,
		description="Submitted, cancelled or updated after submit.",
	)


def topic_slug(doctype: str) -> str:
	"""`Stock Ledger Entry` -> `stock-ledger-entry`.

	Dashes, not underscores: Kafka warns that topics differing only in `.` versus `_`
	collide in metric names, and the prefix is joined with a dot.
	"""
	return "-".join(doctype.strip().lower().split())


def default_topic(prefix: str, doctype: str) -> str:
	return f"{prefix}.{topic_slug(doctype)}" if prefix else topic_slug(doctype)
