"""docs/event-catalog.md is the generator's output over the shipped schemas (it cannot drift)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "docs" / "event-catalog.md"
SCRIPT = ROOT / "scripts" / "event_catalog.py"
docs = SimpleNamespace(**runpy.run_path(str(SCRIPT)))


def test_committed_event_catalog_equals_the_generated_one():
	assert CATALOG.read_text(encoding="utf-8") == docs.render(), f"regenerate it: {docs.COMMAND}"


def test_the_generator_runs_as_a_script():
	out = subprocess.run(
		[sys.executable, str(SCRIPT)],
		capture_output=True,
		text=True,
		check=True,
		cwd=ROOT,
	)
	assert out.stdout == docs.render()


def test_the_catalog_covers_every_doctype_event_and_field():
	text = docs.render()
	for doctype in ("Sales Invoice", "GL Entry", "Stock Ledger Entry", "Work Order", "Job Card"):
		assert f"\n## {doctype}\n" in text
	for needle in (
		"Default topic `erpnext.stock-ledger-entry`",
		"| `progressed` | `on_update_after_submit` | `on_change` |",
		"| `posted` | `on_submit` | `on_submit` |",
		"| document.items[].rate | decimal(21,9), optional |",
		"| document.time_logs[].to_time | local-timestamp-micros, optional |",
		"| document.is_cancelled | boolean (default false) |",
		"never re-emitted",
		"**`revalued`** event",
		"key = company",
	):
		assert needle in text, needle
