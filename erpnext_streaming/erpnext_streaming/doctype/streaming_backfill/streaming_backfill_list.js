// Copyright (c) 2026, erpnext_streaming developers and contributors
// License: MIT. See LICENSE

const BACKFILL_API =
	"erpnext_streaming.erpnext_streaming.doctype.streaming_backfill.streaming_backfill";
const BACKFILL_COLOURS = {
	Queued: "blue",
	Running: "orange",
	Interrupted: "yellow",
	Failed: "red",
	Cancelled: "gray",
	Completed: "green",
};

frappe.listview_settings["Streaming Backfill"] = {
	get_indicator(doc) {
		return [__(doc.status), BACKFILL_COLOURS[doc.status] || "gray", "status,=," + doc.status];
	},
	onload(listview) {
		frappe.realtime.on("streaming_backfill_progress", () => listview.refresh());
	},
	refresh(listview) {
		// the doctype is in_create (no New): this button replaces it
		listview.page.set_primary_action(__("Start Backfill"), () => start_backfill_dialog());
		// /app/streaming-backfill/new sends the admin here, to the dialog
		if (frappe.route_options && frappe.route_options.start_backfill) {
			delete frappe.route_options.start_backfill;
			start_backfill_dialog();
		}
	},
};

// doctype, company, dates; "Count documents" first (a dry run), then "Start backfill"
function start_backfill_dialog() {
	frappe.db.get_doc("Streaming Settings").then((settings) => {
		const doctypes = (settings.event_catalog || [])
			.filter((row) => row.enabled && row.on_submit)
			.map((row) => row.document_type);
		let counted = null;
		const dialog = new frappe.ui.Dialog({
			title: __("Start Backfill"),
			fields: [
				{
					fieldname: "doctype",
					fieldtype: "Select",
					label: __("Document Type"),
					options: doctypes,
					reqd: 1,
					description: __(
						"Submitted documents of this type are sent as submitted events."
					),
				},
				{
					fieldname: "company",
					fieldtype: "Link",
					options: "Company",
					label: __("Company"),
				},
				{ fieldname: "column_break", fieldtype: "Column Break" },
				{ fieldname: "from_date", fieldtype: "Date", label: __("From Date") },
				{ fieldname: "to_date", fieldtype: "Date", label: __("To Date") },
				{ fieldname: "summary_section", fieldtype: "Section Break" },
				{ fieldname: "summary", fieldtype: "HTML" },
			],
			primary_action_label: __("Count documents"),
			primary_action(values) {
				const method = counted === null ? "count" : "start";
				frappe
					.call({ method: `${BACKFILL_API}.${method}`, args: values, freeze: true })
					.then((r) => {
						if (method === "start") {
							dialog.hide();
							frappe.show_alert({
								message: __("Backfill started"),
								indicator: "green",
							});
							frappe.set_route("Form", "Streaming Backfill", r.message);
							return;
						}
						counted = r.message;
						dialog.fields_dict.summary.$wrapper.html(
							`<p class="backfill-count">${__(
								"{0} submitted document(s) in scope. Event ids already in the Event Log are skipped.",
								[format_number(counted, null, 0)]
							)}</p>`
						);
						dialog.set_primary_action(__("Start backfill"), dialog.primary_action);
						dialog.get_primary_btn().text(__("Start backfill"));
					});
			},
		});
		// a changed scope must be counted again
		for (const field of ["doctype", "company", "from_date", "to_date"]) {
			dialog.fields_dict[field].df.onchange = () => {
				if (counted === null) return;
				counted = null;
				dialog.fields_dict.summary.$wrapper.empty();
				dialog.get_primary_btn().text(__("Count documents"));
			};
		}
		dialog.show();
	});
}
