"""Whitelisted methods (Frappe glue), every one System Manager only: `requeue`, `health`
(docs/operations.md, "Health monitoring") and the workspace's number cards and chart."""

from __future__ import annotations

from html import escape

import frappe
from frappe import _
from frappe.utils import cint, now_datetime

from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, Status
from erpnext_streaming.emitters.handler import message_context
from erpnext_streaming.outbox.requeue import RequeueRefused, count_candidates, requeue_candidates
from erpnext_streaming.outbox.requeue import requeue as requeue_rows

# a filter matching more rows than this is requeued by a background job, not in the request
REQUEUE_INLINE_LIMIT = 1000


@frappe.whitelist(methods=["POST"])
def requeue(names: list | str | None = None, filters: dict | str | None = None) -> dict:
	"""Requeue Failed/Dead Streaming Event Log rows (back to Queued with a fresh attempt
	count; the drainer is woken after the request commits).

	`names`: a list of Event Log names (JSON text from the desk). `filters`: `{field: value
	or [values]}` on status, company, topic, event_type, reference_doctype,
	reference_name, schema_name or name; only Failed and Dead rows ever match, and rows a
	drainer is delivering right now are left out. Named rows must all be Failed or Dead
	and not in flight, or nothing is requeued. Never a method path or other code reference.
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
			matched = count_candidates(frappe.db, dict(filters))
			if matched > REQUEUE_INLINE_LIMIT:
				return _requeue_in_background(dict(filters), matched)
			wanted += requeue_candidates(frappe.db, dict(filters))
		requeued = requeue_rows(frappe.db, wanted, now, frappe.session.user, message_context())
	except RequeueRefused as e:
		details = "".join(f"<br>{name}: {_(reason)}" for name, reason in e.rows[:20])
		frappe.throw(_(e.message) + details, title=_("Not requeued"))
	if requeued:
		from erpnext_streaming.operations.site import wake_after_commit

		wake_after_commit()
	return {"requeued": len(requeued), "names": requeued[:1000]}


def _requeue_in_background(filters: dict, matched: int) -> dict:
	frappe.enqueue(
		"erpnext_streaming.operations.site.requeue_matching",
		queue="long",
		filters=filters,
		enqueue_after_commit=True,
	)
	return {"requeued": 0, "matched": matched, "background": True}


@frappe.whitelist(methods=["GET", "POST"])
def health(check_broker: int | str | bool = 1) -> dict:
	"""Health of the stream as JSON, for monitoring (System Manager only; use an API key).

	`status` is ok, degraded (events wait longer than the site config
	`erpnext_streaming_health_max_lag_seconds`, default 300, or dead letters exist), down
	(Kafka unreachable) or disabled; `healthy` is true only for ok. Also: counts per
	status, pending, lag_seconds (age of the oldest Queued/Failed event), last_sent_at,
	last_error, broker {reachable, cluster_id, brokers, error}, drainer {running}. Never
	contains configuration or secrets. `check_broker=0` skips the Kafka round trip.
	"""
	frappe.only_for("System Manager")
	from erpnext_streaming.operations import site

	return site.health(check_broker=bool(cint(check_broker)))


# Number card colours: green (fine), amber (look), red (act). A custom card's text is put
# into the card as HTML (frappe/public/js/frappe/widgets/number_card_widget.js,
# get_number_for_custom_card + render_number), the only way a card's colour can follow its value.
CARD_COLOURS = ("var(--green-600)", "var(--orange-600)", "var(--red-600)")
# status: (amber from, red from) rows
CARD_LEVELS = {Status.QUEUED: (1000, 10000), Status.FAILED: (1, 100), Status.DEAD: (1, 1)}


def _coloured(text: str, value: float, amber: float, red: float) -> str:
	level = 2 if value >= red else 1 if value >= amber else 0
	return f'<span style="color: {CARD_COLOURS[level]}">{escape(text)}</span>'


@frappe.whitelist()
def status_count(filters: dict | str | None = None) -> str:
	"""Number cards Queued / Failed / Dead (`filters` = {"status": ...}), coloured by CARD_LEVELS."""
	frappe.only_for("System Manager")
	status = (frappe.parse_json(filters) or {}).get("status") if filters else None
	if status not in CARD_LEVELS:
		frappe.throw(_("Give one of these statuses: {0}").format(", ".join(CARD_LEVELS)))
	from erpnext_streaming.operations.status import counts

	count = counts(frappe.db, sent=False)[status]
	return _coloured(f"{count:,}", count, *CARD_LEVELS[status])


@frappe.whitelist()
def oldest_pending_age(filters: dict | str | None = None) -> str:
	"""Number card "Streaming Oldest Pending": age of the oldest Queued or Failed event; amber
	after a minute, red beyond the health check's maximum lag (`site.max_lag_seconds`)."""
	frappe.only_for("System Manager")
	from erpnext_streaming.operations import site, status

	now, oldest = now_datetime(), (status.oldest(frappe.db, s) for s in (Status.QUEUED, Status.FAILED))
	lag = max((max(0.0, (now - moment).total_seconds()) for moment in oldest if moment), default=None)
	text = _("nothing pending") if lag is None else status.short_age(lag)
	return _coloured(text, lag or 0, 60, site.max_lag_seconds())


@frappe.whitelist()
def last_reconcile(filters: dict | str | None = None) -> str:
	"""Number card "Streaming Last Reconcile": the last `streaming reconcile` of this site,
	green when the stream equaled the ledger, red when it differed, amber when never run."""
	frappe.only_for("System Manager")
	from erpnext_streaming.operations.reconcile import last_result

	result = last_result()
	if result is None:
		return _coloured(_("never run"), 1, 1, 2)
	text = _("{0} differences · {1}").format(result["differences"] + result["problems"], result["at"][:16])
	return _coloured(text, 0 if result["ok"] else 1, 1, 1)


@frappe.whitelist()
def events_per_minute(chart_name: str | None = None, filters: dict | str | None = None, **kwargs) -> dict:
	"""Dashboard chart source "Streaming Events per Minute": the last hour by status."""
	frappe.only_for("System Manager")
	from erpnext_streaming.operations import status

	data = cut_spikes(status.per_minute(frappe.db, now_datetime()))
	data["type"] = "bar"
	return data


SPIKE_FACTOR = 5


def cut_spikes(data: dict) -> dict:
	"""One burst (a backfill) flattens every other bar. A minute above SPIKE_FACTOR x the
	typical busy minute (lower median) is drawn at that height, its statuses in proportion,
	and a marker line (frappe-charts `yMarkers`) gives its real total."""
	totals = [sum(minute) for minute in zip(*(d["values"] for d in data["datasets"]), strict=True)]
	busy = sorted(t for t in totals if t)
	ceiling = SPIKE_FACTOR * busy[(len(busy) - 1) // 2] if len(busy) >= 3 else None
	spikes = [(label, t) for label, t in zip(data["labels"], totals, strict=True) if ceiling and t > ceiling]
	if not spikes:
		return data
	for dataset in data["datasets"]:
		dataset["values"] = [
			v if t <= ceiling else round(v * ceiling / t)
			for v, t in zip(dataset["values"], totals, strict=True)
		]
	text = ", ".join(f"{label} {total:,}" for label, total in spikes[:3])
	data["yMarkers"] = [{"label": _("cut: {0} events").format(text), "value": ceiling}]
	return data
