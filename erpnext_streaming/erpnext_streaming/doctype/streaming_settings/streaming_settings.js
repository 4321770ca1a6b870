// Copyright (c) 2026, erpnext_streaming developers and contributors
// License: MIT. See LICENSE

frappe.ui.form.on("Streaming Settings", {
	refresh(frm) {
		frm.add_custom_button(__("Test connection"), () => {
			if (frm.is_dirty()) {
				frappe.msgprint(__("Save the settings first: the test uses the saved connection."));
				return;
			}
			frappe.call({
				method: "erpnext_streaming.erpnext_streaming.doctype.streaming_settings.streaming_settings.test_connection",
				freeze: true,
				freeze_message: __("Asking the Kafka cluster..."),
				callback: ({ message }) => show_result(message),
			});
		});
	},
});

function show_result(result) {
	if (!result || !result.ok) {
		frappe.msgprint({
			title: __("Connection failed"),
			indicator: "red",
			message: frappe.utils.escape_html((result && result.error) || __("No answer")),
		});
		return;
	}
	const topics = result.topics.length
		? result.topics.map((t) => `<code>${frappe.utils.escape_html(t)}</code>`).join(", ")
		: __("none yet");
	frappe.msgprint({
		title: __("Connected"),
		indicator: "green",
		message: `
			<p>${__("Cluster ID")}: <b>${frappe.utils.escape_html(result.cluster_id || "")}</b></p>
			<p>${__("Brokers")}: ${result.brokers.map(frappe.utils.escape_html).join(", ")}</p>
			<p>${__("Topics")}: ${topics}</p>`,
	});
}
