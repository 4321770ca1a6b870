"""The event catalog: defaults for the five doctypes, routes, cached lookup and its invalidation."""

from __future__ import annotations

import frappe
import pytest
from frappe import standin

from erpnext_streaming import catalog, constants
from erpnext_streaming.settings import StreamingConfig

BUILT_IN = [
	"Sales Invoice",
	"GL Entry",
	"Stock Ledger Entry",
	"Work Order",
	"Job Card",
	"Payment Entry",
	"Payment Ledger Entry",
]


def settings(**overrides) -> dict:
	values = {"enabled": 1, "topic_prefix": "erpnext", "event_catalog": catalog.default_catalog_rows()}
	values.update(overrides)
	return values


def test_defaults_cover_the_five_card_doctypes_with_their_applicable_events():
	rows = {r["document_type"]: r for r in catalog.default_catalog_rows()}
	assert list(rows) == BUILT_IN
	assert {k: rows["Sales Invoice"][k] for k in ("on_submit", "on_cancel", "on_update_after_submit", "on_change")} == {
		"on_submit": 1, "on_cancel": 1, "on_update_after_submit": 1, "on_change": 1}  # fmt: skip
	for ledger in ("GL Entry", "Stock Ledger Entry"):
		assert (rows[ledger]["on_submit"], rows[ledger]["on_cancel"], rows[ledger]["on_change"]) == (1, 0, 0)
	assert (rows["Work Order"]["on_change"], rows["Work Order"]["on_update_after_submit"]) == (1, 0)
	assert (rows["Job Card"]["on_change"], rows["Job Card"]["on_submit"], rows["Job Card"]["on_cancel"]) == (
		1,
		1,
		1,
	)
	assert all(r["enabled"] == 1 and r["topic"] == "" and r["schema_version"] == 0 for r in rows.values())
	assert "Topic: erpnext.stock-ledger-entry." in rows["Stock Ledger Entry"]["description"]


def test_routes_follow_the_catalog_rows():
	cat = catalog.Catalog.from_config(StreamingConfig.from_doc(settings()))
	route = cat.route("Sales Invoice", "on_submit")
	assert (route.event_type, route.kind, route.topic) == ("submitted", "submit", "erpnext.sales-invoice")
	assert cat.route("Sales Invoice", "on_change").event_type == "status_changed"
	assert cat.route("GL Entry", "on_submit").event_type == "posted"
	assert cat.route("GL Entry", "on_cancel") is None
	assert cat.route("Work Order", "on_update_after_submit").event_type == "progressed"
	assert cat.route("Job Card", "on_update").event_type == "status_changed"
	assert cat.route("Customer", "on_update") is None
	assert all(cat.route(doctype, "on_submit") for doctype in BUILT_IN)


def test_row_overrides_topic_version_masks_and_switches():
	rows = catalog.default_catalog_rows()
	rows[0].update(
		topic="billing.invoices", schema_version=2, masked_fields="tax_id, contact_email", on_change=0
	)
	rows[1].update(enabled=0)
	cat = catalog.Catalog.from_config(
		StreamingConfig.from_doc(settings(event_catalog=rows, mask_mode="Drop"))
	)
	route = cat.route("Sales Invoice", "on_submit")
	assert (route.topic, route.schema_version, route.mask_mode) == ("billing.invoices", 2, "Drop")
	assert route.masked_fields == frozenset({"tax_id", "contact_email"})
	assert cat.route("Sales Invoice", "on_change") is None
	assert cat.route("GL Entry", "on_submit") is None


def test_admin_added_submittable_doctype_gets_the_generic_events():
	rows = [{"document_type": "Purchase Receipt", "enabled": 1, "on_submit": 1, "on_cancel": 1}]
	cat = catalog.Catalog.from_config(StreamingConfig.from_doc(settings(event_catalog=rows)))
	assert cat.route("Purchase Receipt", "on_submit").topic == "erpnext.purchase-receipt"
	assert cat.route("Purchase Receipt", "on_cancel").event_type == "cancelled"
	assert cat.route("Purchase Receipt", "on_update_after_submit") is None  # not ticked


def test_disabled_streaming_has_no_routes():
	cat = catalog.Catalog.from_config(StreamingConfig.from_doc(settings(enabled=0)))
	assert not cat.enabled
	assert cat.route("Sales Invoice", "on_submit") is None


def test_seeding_adds_missing_builtins_once_and_never_overrides_admin_rows():
	installed = set(BUILT_IN)
	rows = catalog.missing_default_rows([], [], installed, "erpnext")
	assert [r["document_type"] for r in rows] == BUILT_IN
	# the admin edited Sales Invoice and deleted Job Card (it was seeded before)
	rows = catalog.missing_default_rows(["Sales Invoice", "GL Entry"], BUILT_IN, installed, "erpnext")
	assert rows == []
	# ERPNext installed after the app: only then are its doctypes seeded
	assert catalog.missing_default_rows([], [], {"Job Card"}, "erpnext")[0]["document_type"] == "Job Card"
	assert catalog.missing_default_rows([], [], set(), "erpnext") == []


@pytest.mark.integration
def test_cached_catalog_is_read_once_and_rebuilt_after_clear_cache(site):
	standin.set_single(constants.SETTINGS_DOCTYPE, settings())
	assert catalog.get_catalog().route("Sales Invoice", "on_submit").topic == "erpnext.sales-invoice"

	# settings change without a cache clear: the cached catalog still answers (one lookup)
	standin.set_single(constants.SETTINGS_DOCTYPE, settings(topic_prefix="erp"))
	frappe.local.cache.clear()  # a new request: the value now comes from Redis
	assert catalog.get_catalog().route("Sales Invoice", "on_submit").topic == "erpnext.sales-invoice"

	catalog.clear_cache()  # what Streaming Settings.on_update does
	assert catalog.get_catalog().route("Sales Invoice", "on_submit").topic == "erp.sales-invoice"
	frappe.local.cache.clear()
	assert catalog.get_catalog().route("Sales Invoice", "on_submit").topic == "erp.sales-invoice"
