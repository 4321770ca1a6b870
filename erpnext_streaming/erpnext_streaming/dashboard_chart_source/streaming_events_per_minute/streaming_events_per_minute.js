// Copyright (c) 2026, erpnext_streaming developers and contributors
// License: MIT. See LICENSE

frappe.provide("frappe.dashboards.chart_sources");

frappe.dashboards.chart_sources["Streaming Events per Minute"] = {
	method: "erpnext_streaming.api.events_per_minute",
	filters: [],
};
