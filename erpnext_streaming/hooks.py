"""Frappe hooks: declarative only, importable without Frappe (a test checks it)."""

app_name = "erpnext_streaming"
app_title = "ERPNext Streaming"
app_publisher = "erpnext_streaming developers"
app_description = "Stream ERPNext business transactions to Apache Kafka as versioned Avro events"
app_email = "developers@erpnext-streaming.invalid"
app_license = "MIT"

# ERPNext is optional (README "ERPNext is optional"): without it the built-in catalog rows
# are skipped and any submittable doctype can still be streamed. So no required_apps.

export_python_type_annotations = True

after_install = "erpnext_streaming.install.after_install"
after_migrate = "erpnext_streaming.install.after_migrate"

# Capture (facts file, "Document events" and "ERPNext ledger behaviour"): each handler is
# tiny; it asks the cached catalog and returns at once when the (doctype, method) is not
# streamed or streaming is off. The built-in doctypes list exactly the methods that
# carry their events; "*" is the generic path for submittable doctypes an admin adds to
# the catalog, and skips the built-ins so no event is captured twice.
_handle = "erpnext_streaming.emitters.handler.handle"
_handle_generic = "erpnext_streaming.emitters.handler.handle_generic"

doc_events = {
	"Sales Invoice": {
		"on_submit": _handle,
		"on_cancel": _handle,
		"on_update_after_submit": _handle,
		"on_change": _handle,
	},
	"Payment Entry": {"on_submit": _handle, "on_cancel": _handle, "on_update_after_submit": _handle},
	# ledger rows are inserted with submit(); reversal rows of a cancel too
	"GL Entry": {"on_submit": _handle},
	"Payment Ledger Entry": {"on_submit": _handle},
	"Stock Ledger Entry": {"on_submit": _handle},
	"Work Order": {
		"on_submit": _handle,
		"on_cancel": _handle,
		"on_update_after_submit": _handle,
		"on_change": _handle,
	},
	"Job Card": {
		"on_submit": _handle,
		"on_cancel": _handle,
		"on_update": _handle,
		"on_change": _handle,
	},
	# Revaluation (docs/operations.md, "Stock reposts"): when a repost completes (a db_set
	# of its status, so only on_change fires), the stock ledger rows it rewrote are
	# emitted again as `revalued` events by a background job
	"Repost Item Valuation": {"on_change": "erpnext_streaming.operations.site.on_repost_change"},
	"*": {
		"on_submit": _handle_generic,
		"on_cancel": _handle_generic,
		"on_update_after_submit": _handle_generic,
	},
}

# Log Settings clears Sent rows after 30 days; Dead letters stay until resolved.
default_log_clearing_doctypes = {"Streaming Event Log": 30}

# Delivery safety net (docs/architecture.md, "Delivery"): every minute the sweeper releases
# expired leases and makes sure a drainer is queued or running when rows wait (Redis was
# down at commit time, a drainer died, a Failed row became due).
scheduler_events = {
	"cron": {
		"* * * * *": ["erpnext_streaming.delivery.jobs.sweep"],
		# after ERPNext's daily update_invoice_status, whose bulk UPDATE to Overdue fires no hook
		"30 1 * * *": ["erpnext_streaming.emitters.handler.emit_changes_without_hook"],
	},
	# safety net of the revaluation job queued after each completed repost (Redis down
	# then, a job that paused or failed): runs unfinished revaluations
	"hourly_long": ["erpnext_streaming.operations.site.run_pending_revaluations"],
}
