// Copyright (c) 2026, erpnext_streaming developers and contributors
// License: MIT. See LICENSE

// Written by the app only (no Save). Live progress, Stop, Resume and Cancel for backfills;
// a new record is started from the list's "Start Backfill" dialog instead.
frappe.ui.form.on("Streaming Backfill", {
	onload(frm) {
		frappe.realtime.on("streaming_backfill_progress", (data) => {
			if (frm.doc.name != data.name) return;
			// a new status (started, ended) brings its buttons; then the bar moves live
			if (data.status || frm.doc.status !== "Running") frm.reload_doc();
			else show_progress(frm, data.processed, data.total);
		});
	},
	refresh(frm) {
		if (frm.is_new()) {
			frappe.route_options = { start_backfill: 1 };
			frappe.set_route("List", "Streaming Backfill");
			return;
		}
		frm.disable_save();
		const doc = frm.doc;
		if (doc.status === "Running") show_progress(frm, doc.processed, doc.total);
		if (doc.kind !== "Backfill" || !frappe.user.has_role("System Manager")) return;
		const api =
			"erpnext_streaming.erpnext_streaming.doctype.streaming_backfill.streaming_backfill";
		const call = (method) =>
			frappe
				.call({ method: `${api}.${method}`, args: { name: doc.name } })
				.then(() => frm.reload_doc());
		if (["Queued", "Interrupted", "Failed"].includes(doc.status)) {
			frm.add_custom_button(__("Resume"), () => {
				frappe.show_alert({
					message: __("Resumed in the background"),
					indicator: "green",
				});
				call("resume");
			});
		}
		if (doc.status === "Running") {
			frm.add_custom_button(__("Stop"), () =>
				frappe.confirm(
					__("Stop after the current chunk? Resume continues from there."),
					() => call("cancel")
				)
			);
		} else if (["Queued", "Interrupted", "Failed"].includes(doc.status)) {
			frm.add_custom_button(__("Cancel"), () =>
				frappe.confirm(
					__("Cancel this backfill for good? Events already written stay queued."),
					() => call("cancel")
				)
			);
		}
	},
});

function show_progress(frm, processed, total) {
	const percent = total ? (100 * processed) / total : 0;
	frm.dashboard.show_progress(
		__("Backfill"),
		percent,
		__("{0} of {1} documents", [
			format_number(processed, null, 0),
			format_number(total, null, 0),
		])
	);
}
