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

// an existing topic's partitions and replication, or what a missing one should be created with
function layout(r) {
	const t = r.exists ? r : r.recommended || {};
	if (t.partitions == null) return "";
	const isr = t.min_insync_replicas == null ? "?" : t.min_insync_replicas;
	const text = __("{0} partitions, replication factor {1}, min.insync.replicas {2}", [
		t.partitions,
		t.replication_factor,
		isr,
	]);
	const warnings = (r.warnings || []).join("; ");
	return (r.exists ? text : __("create with {0}", [text])) + (warnings ? ` (${warnings})` : "");
}

function show_result(result) {
	if (!result || !result.ok) {
		frappe.msgprint({
			title: __("Connection failed"),
			indicator: "red",
			message: frappe.utils.escape_html((result && result.error) || __("No answer")),
		});
		return;
	}
	const code = (t) => `<code>${frappe.utils.escape_html(t)}</code>`;
	const routed = result.catalog_topics || [];
	const routed_names = new Set(routed.map((r) => r.topic));
	const catalog_rows = routed
		.map(
			(r) => `<tr><td>${code(r.topic)}</td><td>${
				r.exists
					? `<span class="indicator-pill green">${__("exists")}</span>`
					: `<span class="indicator-pill orange">${__("missing")}</span>`
			}</td><td>${frappe.utils.escape_html(layout(r))}</td></tr>`
		)
		.join("");
	const others = result.topics.filter((t) => !routed_names.has(t));
	frappe.msgprint({
		title: __("Connected"),
		indicator: "green",
		wide: true,
		message: `
			<p>${__("Cluster ID")}: <b>${frappe.utils.escape_html(result.cluster_id || "")}</b></p>
			<p>${__("Brokers")}: ${result.brokers.map(frappe.utils.escape_html).join(", ")}</p>
			<p>${__("Topics the Event Catalog writes to")}:</p>
			<table class="table table-bordered table-condensed">${catalog_rows}</table>
			<p class="text-muted small">${__(
				"A missing topic is created on the first event only if the cluster auto-creates topics (with its own defaults); otherwise its events wait until it exists. Create the missing ones with: bench --site SITE streaming create-topics"
			)}</p>
			<p>${__("Other topics")}: ${others.length ? others.map(code).join(", ") : __("none")}</p>`,
	});
}
