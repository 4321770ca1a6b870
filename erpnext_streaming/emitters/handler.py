"""doc_events entry points (Frappe glue). Tiny by design: check flags, ask the cached
catalog, capture into the transaction's buffer, return.

The buffer lives on `frappe.local` (not `frappe.flags`, which test cleanup replaces) and
is registered once per transaction, like `frappe.realtime`'s `_realtime_log`: flushed by
`frappe.db.before_commit` into the outbox (inside the transaction), dropped by
`frappe.db.after_rollback` (Frappe's Webhook registers no after_rollback: we do).
`commit()` resets after_rollback and `rollback()` resets before/after_commit, so the two
callbacks never outlive their transaction; both delete the buffer, and the next event
registers them again. Long jobs that commit many times flush per commit.

Nothing here may raise into the user's save (facts file, "Document events"): every
failure is caught, logged once per transaction, and kept as a dead-letter event. One
exception: a flush error that means MariaDB has already rolled the user's transaction
back (`transaction_is_lost`) is raised, so the user's commit fails instead of reporting
success for a document that is gone.
"""

from __future__ import annotations

from datetime import datetime

import frappe
from frappe.utils import now_datetime

from erpnext_streaming.catalog import get_catalog
from erpnext_streaming.constants import BUILTIN_BY_DOCTYPE
from erpnext_streaming.emitters import capture
from erpnext_streaming.emitters.codec import get_codec
from erpnext_streaming.outbox.mariadb import is_mariadb_error
from erpnext_streaming.outbox.records import MessageContext
from erpnext_streaming.outbox.write import write

BUFFER_ATTR = "_erpnext_streaming_buffer"
# errors after which MariaDB has rolled the transaction back: 1213 deadlock victim; 2006 /
# 2013 connection gone or lost; 0 PyMySQL's InterfaceError(0, "") of a closed connection
LOST_TRANSACTION_ERRORS = (1213, 2006, 2013, 0)
LOCK_WAIT_TIMEOUT = 1205  # rolls back the transaction only with innodb_rollback_on_timeout
LOGGER = "erpnext_streaming"


def handle(doc, method, *args, **kwargs):
	"""Handler of the built-in doctypes' events (hooks.py)."""
	route = None
	try:
		flags = frappe.local.flags
		if flags.in_install or flags.in_migrate or flags.in_patch or flags.in_uninstall:
			return
		catalog = get_catalog()
		if not catalog.enabled or (flags.in_import and not catalog.stream_data_import):
			return
		route = catalog.route(doc.doctype, method)
		if route is None:
			return
		codec = get_codec()
		capture.capture(get_buffer(), doc, route, datetime.now(codec.time_zone), codec)
	except Exception as e:
		_capture_failed(doc, route, method, e)


def handle_generic(doc, method, *args, **kwargs):
	"""Handler for submittable doctypes an admin adds to the catalog ("*" in hooks.py)."""
	if doc.doctype in BUILTIN_BY_DOCTYPE:
		return  # the built-in handler has it
	handle(doc, method, *args, **kwargs)


def emit_changes_without_hook():
	"""Daily (hooks.py): a status_changed event for each invoice ERPNext made Overdue by a bulk
	UPDATE (no hook), as if its on_change had fired; compared with the last emitted state."""
	if get_catalog().route("Sales Invoice", "on_change") is None:
		return
	for count, name in enumerate(capture.changed_without_hook(frappe.db), 1):
		handle(frappe.get_doc("Sales Invoice", name), "on_change")
		if count % 500 == 0:
			frappe.db.commit()  # the flush writes each batch's events
	frappe.db.commit()  # the last batch's events (a scheduler job commits only on success)


def get_buffer() -> capture.Buffer:
	buffer = getattr(frappe.local, BUFFER_ATTR, None)
	if buffer is None:
		buffer = capture.Buffer(db=frappe.db)
		setattr(frappe.local, BUFFER_ATTR, buffer)
		frappe.db.before_commit.add(flush)
		frappe.db.after_rollback.add(clear)
	return buffer


def clear():
	if hasattr(frappe.local, BUFFER_ATTR):
		delattr(frappe.local, BUFFER_ATTR)


def flush():
	"""before_commit: write the transaction's events to the outbox, then wake the drainer.

	Runs inside the user's transaction. If the outbox write fails the commit still goes
	ahead (the ERP must not break) and the failure is written to Error Log in the same
	transaction, unless the transaction itself is lost: then the error is raised.
	"""
	buffer = getattr(frappe.local, BUFFER_ATTR, None)
	clear()
	if not buffer:
		return
	try:
		records = capture.flush(
			buffer, frappe.db, get_codec(), on_error=lambda e, err: _log_once(buffer, e, err)
		)
		if not records:
			return
		write(frappe.db, records, now_datetime(), context=message_context())
		from erpnext_streaming.delivery import wake

		frappe.db.after_commit.add(wake.after_commit)
	except Exception as e:
		if transaction_is_lost(e):
			raise
		frappe.log_error(title="erpnext_streaming: events of this transaction were not written to the outbox")


def transaction_is_lost(error: BaseException) -> bool:
	"""Has MariaDB rolled the user's transaction back? (`is_mariadb_error` also asks what the
	error was raised from: frappe.db.sql raises QueryDeadlockError from PyMySQL's error, and
	the outbox write's ROLLBACK TO SAVEPOINT then fails in the handler of the first)."""
	if any(is_mariadb_error(error, number) for number in LOST_TRANSACTION_ERRORS):
		return True
	if not is_mariadb_error(error, LOCK_WAIT_TIMEOUT):
		return False
	try:
		return bool(int(frappe.db.sql("SELECT @@innodb_rollback_on_timeout")[0][0]))
	except Exception:
		return True  # cannot tell: a commit that fails is better than one that reports a lost invoice


def message_context() -> MessageContext:
	"""The site and its time zone, for the headers of the messages the outbox builds."""
	from zoneinfo import ZoneInfo

	from frappe.utils import get_system_timezone

	return MessageContext(frappe.local.site, ZoneInfo(get_system_timezone() or "UTC"))


def _capture_failed(doc, route, method, error):
	try:
		buffer = get_buffer()
		event = capture.capture_failed(buffer, doc, route, method, capture.describe_error(error))
		_log_once(buffer, event, error)
	except Exception:
		pass  # the last line of defence: never raise into the user's save


def _log_once(buffer: capture.Buffer, event: capture.Captured, error: Exception) -> None:
	key = f"{event.doctype}:{type(error).__name__}"
	if key in buffer.logged:
		return
	buffer.logged.add(key)
	frappe.logger(LOGGER).warning(
		f"{event.doctype} {event.name} ({event.route.method}): {capture.describe_error(error)}; "
		"kept as a dead letter in Streaming Event Log"
	)
