"""Whitelisted methods (Frappe glue).

`requeue`: System Manager only. Takes Event Log names or a filter, never a method path
or any other code reference from the caller. Only Failed and Dead rows are accepted
(all or nothing); they go back to Queued with a fresh attempt count, and the drainer is
woken after the request commits.
"""

from __future__ import annotations

import frappe
from frappe import _
from frappe.utils import now_datetime

from erpnext_streaming import outbox
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE

REQUEUE_LIMIT = 100000


@frappe.whitelist(methods=["POST"])
def requeue(names: list | str | None = None, filters: dict | str | None = None) -> dict:
	"""Requeue Failed/Dead Streaming Event Log rows.

	`names`: a list of Event Log names (JSON text from the desk). `filters`: `{field: value
	or [values]}` on status, company, topic, event_type, reference_doctype,
	reference_name, schema_name or name; only Failed and Dead rows ever match, and rows a
	drainer is delivering right now are left out. Named rows must all be Failed or Dead
	and not in flight, or nothing is requeued.
	"""
	frappe.only_for("System Manager")
	names = frappe.parse_json(names) if names else []
	filters = frappe.parse_json(filters) if filters else {}
	if not isinstance(names, list) or not isinstance(filters, dict):
		frappe.throw(_("Give a list of {0} names or a filter").format(EVENT_LOG_DOCTYPE))
	if not names and not filters:
		frappe.throw(_("Select the {0} rows to requeue, or give a filter").format(EVENT_LOG_DOCTYPE))
	now = now_datetime()
	try:
		wanted = list(names)
		if filters:
			wanted += outbox.requeue_candidates(frappe.db, dict(filters), now, limit=REQUEUE_LIMIT)
		requeued = outbox.requeue(frappe.db, wanted, now, frappe.session.user)
	except outbox.RequeueRefused as e:
		details = "".join(f"<br>{name}: {_(reason)}" for name, reason in e.rows[:20])
		frappe.throw(_(e.message) + details, title=_("Not requeued"))
	if requeued:
		from erpnext_streaming.delivery import wake

		frappe.db.after_commit.add(wake.after_commit)
	return {"requeued": len(requeued), "names": requeued[:1000]}
