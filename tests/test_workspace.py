"""The "ERPNext Streaming" workspace, its number cards, charts and chart source: files Frappe
imports at migrate (frappe/model/sync.py: workspace, dashboard_chart_source;
frappe/utils/dashboard.py: number_card, dashboard_chart), consistent with each other and
with the app's doctypes and whitelisted methods.

Twin: erpnext_streaming/tests/test_workspace.py (after migrate on a real bench)."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest
from harness.schema import APP_ROOT, doctype_jsons

MODULE_DIR = APP_ROOT / "erpnext_streaming"
MODULE = "ERPNext Streaming"


def scrub(name: str) -> str:
	return name.replace(" ", "_").replace("-", "_").lower()


def records(kind: str) -> dict[str, dict]:
	found = {}
	for path in sorted((MODULE_DIR / kind).glob("*/*.json")):
		doc = json.loads(path.read_text())
		assert path.stem == path.parent.name == scrub(doc["name"]), path
		assert doc["module"] == MODULE, path
		found[doc["name"]] = doc
	return found


WORKSPACE = records("workspace")["ERPNext Streaming"]
CARDS = records("number_card")
CHARTS = records("dashboard_chart")
SOURCES = records("dashboard_chart_source")
DOCTYPES = set(doctype_jsons())


def resolve(path: str):
	module, _, name = path.rpartition(".")
	return getattr(importlib.import_module(module), name)


def test_the_workspace_blocks_refer_to_what_it_declares():
	assert WORKSPACE["doctype"] == "Workspace" and WORKSPACE["public"] == 1
	assert WORKSPACE["label"] == WORKSPACE["title"] == "ERPNext Streaming"
	assert WORKSPACE["roles"] == [{"role": "System Manager"}]
	content = json.loads(WORKSPACE["content"])
	assert len({block["id"] for block in content}) == len(content)
	by_type: dict[str, list[str]] = {}
	for block in content:
		data = block["data"]
		name = (
			data.get("number_card_name")
			or data.get("chart_name")
			or data.get("shortcut_name")
			or data.get("card_name")
		)
		by_type.setdefault(block["type"], []).append(name)
	# frappe/public/js/frappe/views/workspace/blocks/block.js make(): a block is drawn only
	# when a row of its kind carries the block's name as its `label`; any other is dropped
	assert by_type["number_card"] == [c["label"] for c in WORKSPACE["number_cards"]]
	assert by_type["chart"] == [c["label"] for c in WORKSPACE["charts"]]
	assert by_type["shortcut"] == [s["label"] for s in WORKSPACE["shortcuts"]]
	breaks = [link["label"] for link in WORKSPACE["links"] if link["type"] == "Card Break"]
	assert by_type["card"] == breaks


def test_cards_charts_and_links_cover_what_operators_need():
	assert set(by_name := {c["number_card_name"] for c in WORKSPACE["number_cards"]}) <= set(CARDS)
	assert by_name == {
		"Streaming Queued Events",
		"Streaming Failed Events",
		"Streaming Dead Letters",
		"Streaming Oldest Pending",
		"Streaming Last Reconcile",
	}
	assert (
		{c["chart_name"] for c in WORKSPACE["charts"]}
		== set(CHARTS)
		== {
			"Streaming Events per Minute",
			"Streaming Events by DocType",
			"Streaming Events by Company",
		}
	)
	links = {link["link_to"] for link in WORKSPACE["links"] if link["type"] == "Link"}
	shortcuts = {s["link_to"] for s in WORKSPACE["shortcuts"]}
	assert {"Streaming Settings", "Streaming Event Log", "Streaming Backfill"} <= links & (shortcuts | links)
	assert links | shortcuts <= DOCTYPES
	# each card Break's link_count is the number of links after it
	count = None
	for link in WORKSPACE["links"]:
		if link["type"] == "Card Break":
			if count is not None:
				assert count[1] == count[0], count
			count = [link["link_count"], 0]
		else:
			count[1] += 1
	assert count[1] == count[0]


@pytest.mark.parametrize("name", sorted(CARDS))
def test_number_cards_call_a_whitelisted_method(name):
	card = CARDS[name]
	assert card["is_standard"] == 1 and card["is_public"] == 1
	assert card["type"] == "Custom" and resolve(card["method"]).whitelisted
	if card["method"].endswith(".status_count"):
		assert json.loads(card["filters_json"])["status"] in ("Queued", "Failed", "Dead")


def test_charts_use_the_event_log_or_the_custom_source():
	per_minute = CHARTS["Streaming Events per Minute"]
	assert per_minute["chart_type"] == "Custom" and per_minute["source"] in SOURCES
	source_js = (
		MODULE_DIR
		/ "dashboard_chart_source"
		/ scrub(per_minute["source"])
		/ f"{scrub(per_minute['source'])}.js"
	).read_text()
	assert f'frappe.dashboards.chart_sources["{per_minute["source"]}"]' in source_js
	(method,) = re.findall(r'method: "([\w.]+)"', source_js)
	assert resolve(method).whitelisted
	for name, field in (
		("Streaming Events by DocType", "reference_doctype"),
		("Streaming Events by Company", "company"),
	):
		chart = CHARTS[name]
		assert chart["chart_type"] == "Group By" and chart["document_type"] == "Streaming Event Log"
		assert chart["group_by_based_on"] == field
		(window,) = json.loads(chart["dynamic_filters_json"])
		assert window[1:3] == ["modified", ">="], "the indexed column"
	for chart in CHARTS.values():
		assert chart["roles"] == [{"role": "System Manager"}]
		json.loads(chart["custom_options"])


def test_chart_source_folders_are_python_packages():
	for name in SOURCES:
		assert (MODULE_DIR / "dashboard_chart_source" / scrub(name) / "__init__.py").exists()
	assert (MODULE_DIR / "dashboard_chart_source" / "__init__.py").exists()
	assert Path(MODULE_DIR / "workspace" / "erpnext_streaming" / "erpnext_streaming.json").exists()


def test_a_burst_is_cut_with_a_marker_so_the_other_minutes_stay_readable():
	from erpnext_streaming.api import cut_spikes

	data = {
		"labels": ["10:00", "10:01", "10:02", "10:03", "10:04"],
		"datasets": [
			{"name": "Sent", "values": [3, 4, 60000, 0, 5]},
			{"name": "Dead", "values": [1, 0, 30000, 0, 0]},
		],
	}
	cut = cut_spikes(data)
	assert [d["values"] for d in cut["datasets"]] == [[3, 4, 13, 0, 5], [1, 0, 7, 0, 0]]
	(marker,) = cut["yMarkers"]
	assert marker["value"] == 20 and "10:02" in marker["label"] and "90,000" in marker["label"]
	calm = {"labels": ["10:00", "10:01"], "datasets": [{"name": "Sent", "values": [5, 7]}]}
	assert cut_spikes(calm) == {
		"labels": ["10:00", "10:01"],
		"datasets": [{"name": "Sent", "values": [5, 7]}],
	}


def test_the_last_reconcile_card_says_when_and_how_it_went(site):
	"""`streaming reconcile` keeps its last result in the site's private files; the card
	shows it, green when the stream equaled the ledger, red when it differed."""
	import frappe

	from erpnext_streaming import api
	from erpnext_streaming.operations import reconcile

	path = Path(frappe.get_site_path("private", reconcile.RESULT_FILE))
	assert "never run" in api.last_reconcile()
	result = {"at": "2026-12-08 00:05:01.123", "ok": True, "differences": 0, "problems": 0}
	path.write_text(json.dumps(result))
	text = api.last_reconcile()
	assert "0 differences" in text and "2026-12-08 00:05" in text and "green" in text
	path.write_text(json.dumps({**result, "ok": False, "differences": 3}))
	assert "3 differences" in api.last_reconcile() and "red" in api.last_reconcile()
