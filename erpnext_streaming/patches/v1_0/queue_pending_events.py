"""Upgrade: deliver the events an earlier version left pending through the delivery queue.

Up to 0.1 the drainer read Queued and Failed Event Log rows directly; it now reads
delivery bundles (delivery/bundles.py). Without a bundle such a row would never be
delivered, so this patch writes bundles for them, in name (= sequence) order, before any
new commit's bundle (`outbox.requeue.queue_pending`, which the sweeper runs too); and it
drops the index only the old claim read. Run the migrate with the site's workers stopped
(docs/operations.md "Upgrading the app"): a row committed by the new code before this
patch ran already has its bundle and may be delivered before older rows of its company.
"""

import frappe

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE
from erpnext_streaming.outbox.outcomes import OLD_PENDING_INDEX
from erpnext_streaming.outbox.requeue import queue_pending


def execute():
	from erpnext_streaming.emitters.handler import message_context

	queue_pending(frappe.db, frappe.utils.now_datetime(), message_context())
	if frappe.db.has_index(f"tab{EVENT_LOG_DOCTYPE}", OLD_PENDING_INDEX):
		frappe.db.sql_ddl(f"ALTER TABLE `tab{EVENT_LOG_DOCTYPE}` DROP INDEX `{OLD_PENDING_INDEX}`")
