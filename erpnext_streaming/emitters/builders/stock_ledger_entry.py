"""Stock Ledger Entry -> the `document` record of its event schema.

At on_submit ERPNext has not computed the row's valuation yet (facts file, "ERPNext
ledger behaviour"): `update_entries_after` writes qty_after_transaction, valuation_rate,
stock_value, stock_value_difference, incoming/outgoing rate and stock_queue right after,
with `db_update()` (no hooks). The capture core therefore keeps a snapshot of the row
and builds it at before_commit, once those fields are completed from the database (one
query); `to_dict` reads a completed snapshot (a dict) like a document.
"""

from __future__ import annotations

from typing import Any

from erpnext_streaming.emitters.builders.registry import get_builder

DOCTYPE = "Stock Ledger Entry"


def to_dict(doc: Any) -> dict:
	return get_builder(DOCTYPE)(doc)
