"""Streaming Settings' Test connection: the catalog's topics and whether each exists, shown in
the dialog. Twin: erpnext_streaming/tests/test_streaming_settings.py (TestTestConnectionPermissions)."""

from __future__ import annotations

import importlib
import re

import pytest
from delivery_support import create_topics
from harness.schema import DOCTYPE_DIR
from operations_support import configure

pytestmark = pytest.mark.integration
SETTINGS_MODULE = "erpnext_streaming.erpnext_streaming.doctype.streaming_settings.streaming_settings"


def test_the_answer_lists_the_catalog_topics_and_whether_they_exist(site, kafka_bootstrap):
	create_topics(kafka_bootstrap, ("tc.sales-invoice", 1))
	configure(bootstrap_servers=kafka_bootstrap, topic_prefix="tc", dead_letter_topic="tc.dead-letter")
	answer = importlib.import_module(SETTINGS_MODULE).test_connection()
	assert answer["ok"] is True and answer["brokers"] == [kafka_bootstrap]
	routed = {entry["topic"]: entry["exists"] for entry in answer["catalog_topics"]}
	assert routed == {
		"tc.dead-letter": False,
		"tc.gl-entry": False,
		"tc.job-card": False,
		"tc.payment-entry": False,
		"tc.payment-ledger-entry": False,
		"tc.sales-invoice": True,
		"tc.stock-ledger-entry": False,
		"tc.work-order": False,
	}
	assert "tc.sales-invoice" in answer["topics"]


def test_an_unreachable_cluster_is_an_answer_not_an_exception(site):
	configure(bootstrap_servers="")
	answer = importlib.import_module(SETTINGS_MODULE).test_connection()
	assert answer == {
		"ok": False,
		"error": "Bootstrap Servers is empty: enter host:port in Streaming Settings and save",
	}


def test_the_dialog_shows_catalog_topics_escaped_with_their_state():
	script = (DOCTYPE_DIR / "streaming_settings" / "streaming_settings.js").read_text()
	assert "result.catalog_topics" in script
	assert re.search(r"r\.exists\s*\?", script) and '__("exists")' in script and '__("missing")' in script
	# every topic name reaches the HTML through escape_html
	assert "const code = (t) => `<code>${frappe.utils.escape_html(t)}</code>`;" in script
	assert "${code(r.topic)}" in script and "others.map(code)" in script
