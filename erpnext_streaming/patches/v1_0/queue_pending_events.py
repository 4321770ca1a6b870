"""Upgrade: deliver the events an earlier version left pending through the delivery queue.

Up to 0.1 the drainer read Queued and Failed Event Log rows directly; it now reads
delivery bundles (delivery/bundles.py). Without a bundle such a row would never be
delivered, so this patch writes bundles for them, in name (= sequence) order, before any
new commit's bundle; and it drops the index only the old claim read.
"""

import frappe

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE
from erpnext_streaming.outbox.outcomes import OLD_PENDING_INDEX, companies_of, pending_names
from erpnext_streaming.outbox.records import MessageContext
from erpnext_streaming.outbox.write import lock_counters


def execute():
	from erpnext_streaming.emitters.handler import message_context

	queue_pending(frappe.db, frappe.utils.now_datetime(), message_context())
	if frappe.db.has_index(f"tab{EVENT_LOG_DOCTYPE}", OLD_PENDING_INDEX):
		frappe.db.sql_ddl(f"ALTER TABLE `tab{EVENT_LOG_DOCTYPE}` DROP INDEX `{OLD_PENDING_INDEX}`")


def queue_pending(db, now, context: MessageContext, chunk: int = 1000) -> int:
	"""Bundles for every Queued or Failed row that is in no bundle yet; the rows queued.

	Under the companies' counter locks (as a commit's outbox write), so no commit of theirs
	slips in while their bundles are drawn. A row committed by the new code before this
	patch ran already has its bundle and is skipped; it may then be delivered before the
	older rows of its company (run the migrate with the site's workers stopped, see
	docs/operations.md "Upgrading the app")."""
	from erpnext_streaming.delivery import bundles

	bundled = bundles.bundled_names(db)
	names = [name for name in pending_names(db) if name not in bundled]
	if not names:
		return 0
	lock_counters(db, companies_of(db, names))
	return bundles.queue_rows(db, names, now, context, chunk)
