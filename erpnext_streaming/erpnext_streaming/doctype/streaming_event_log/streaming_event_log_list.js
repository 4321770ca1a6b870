// Copyright (c) 2026, erpnext_streaming developers and contributors
// License: MIT. See LICENSE

const STREAMING_STATUS_COLOURS = {
	Queued: "blue",
	Sent: "green",
	Failed: "orange",
	Dead: "red",
};

frappe.listview_settings["Streaming Event Log"] = {
	add_fields: ["status", "attempts", "last_error", "reference_doctype", "reference_name"],
	has_indicator_for_draft: true,
	formatters: {
		// the subject: "Sales Invoice ACC-SINV-0001 · submitted"
		event_type(value, df, doc) {
			return [doc.reference_doctype, doc.reference_name, "·", value]
				.filter(Boolean)
				.join(" ");
		},
	},

	get_indicator(doc) {
		let colour = STREAMING_STATUS_COLOURS[doc.status] || "gray";
		// a Failed row close to giving up
		if (doc.status === "Failed" && cint(doc.attempts) >= 5) colour = "red";
		return [__(doc.status), colour, "status,=," + doc.status];
	},

	onload(listview) {
		listview.page.add_action_item(__("Requeue"), () => {
			const names = listview.get_checked_items(true);
			if (!names.length) {
				frappe.msgprint(__("Select Failed or Dead rows to requeue."));
				return;
			}
			frappe.confirm(
				__("Requeue {0} event(s)? Only Failed and Dead rows are accepted.", [
					names.length,
				]),
				() =>
					frappe.call({
						method: "erpnext_streaming.api.requeue",
						args: { names },
						freeze: true,
						callback(r) {
							if (r.message) {
								frappe.show_alert({
									message: __("{0} event(s) queued again", [r.message.requeued]),
									indicator: "green",
								});
								listview.refresh();
							}
						},
					})
			);
		});
	},
};
