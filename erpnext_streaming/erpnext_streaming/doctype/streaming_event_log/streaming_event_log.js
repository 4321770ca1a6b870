// Copyright (c) 2026, erpnext_streaming developers and contributors
// License: MIT. See LICENSE

// Rows are written by the app only: no Save, a title naming the document, Requeue on
// Failed/Dead rows (erpnext_streaming.api.requeue: the rules of `bench streaming requeue`).
frappe.ui.form.on("Streaming Event Log", {
	refresh(frm) {
		const doc = frm.doc;
		frm.disable_save();
		frm.page.set_title(
			[doc.reference_doctype, doc.reference_name, "·", doc.event_type]
				.filter(Boolean)
				.join(" ")
		);
		frm.page.$title_area.find(".title-text").css("max-width", "none"); // the name is the point
		if (doc.status === "Dead") show_dead_letter_copy(frm);
		if (["Failed", "Dead"].includes(doc.status) && frappe.user.has_role("System Manager")) {
			frm.add_custom_button(__("Requeue"), () => requeue(frm)).addClass("btn-primary");
		}
	},
});

function show_dead_letter_copy(frm) {
	const doc = frm.doc;
	if (!doc.dead_lettered_at) {
		frm.set_intro(__("Dead: its copy to the dead-letter topic is still being sent."), "red");
		return;
	}
	frappe.db.get_single_value("Streaming Settings", "dead_letter_topic").then((topic) => {
		const list = `/app/streaming-event-log?status=Dead&topic=${encodeURIComponent(doc.topic || "")}`;
		frm.set_intro(
			__("Dead. Its copy is in topic {0}, partition {1}, offset {2} (since {3}). {4}", [
				`<code>${frappe.utils.escape_html(topic || "")}</code>`,
				cint(doc.kafka_partition),
				doc.kafka_offset,
				frappe.datetime.str_to_user(doc.dead_lettered_at),
				`<a href="${list}">${__("Other dead events of this topic")}</a>`,
			]),
			"red"
		);
	});
}

function requeue(frm) {
	frappe.confirm(
		__("Send this event to Kafka again? It goes back to Queued with a fresh attempt count."),
		() =>
			frappe.call({
				method: "erpnext_streaming.api.requeue",
				args: { names: [frm.doc.name] },
				freeze: true,
				callback(r) {
					if (!r.exc) {
						frappe.show_alert({ message: __("Queued again"), indicator: "green" });
						frm.reload_doc();
					}
				},
			})
	);
}
