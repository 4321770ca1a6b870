"""Stock Ledger Entry -> the `document` record of its event schema.

At on_submit ERPNext has not computed the row's valuation yet (facts file, "ERPNext
ledger behaviour"): `update_entries_after` writes qty_after_transaction, valuation_rate,
stock_value, stock_value_difference and stock_queue right after, with `db_update()` (no
hooks). So `to_dict` at capture carries those fields as the document has them (None or
0); the flush at before_commit reads the final values in one query and either builds
from the completed snapshot or applies them with `apply_valuation`, converting them
exactly as the builder would.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from erpnext_streaming.emitters.builders.compiler import record_builder
from erpnext_streaming.emitters.builders.registry import get_builder
from erpnext_streaming.schemas import get_event_schema

DOCTYPE = "Stock Ledger Entry"
# written by update_entries_after with db_update(), after on_submit (same list as emitters.capture)
VALUATION_FIELDS = (
	"qty_after_transaction",
	"valuation_rate",
	"stock_value",
	"stock_value_difference",
	"incoming_rate",
	"outgoing_rate",
	"stock_queue",
)

_valuation_builders: dict[int, Any] = {}


def to_dict(doc: Any) -> dict:
	return get_builder(DOCTYPE)(doc)


def apply_valuation(document: dict, values: Mapping[str, Any], version: int = 0) -> dict:
	"""`document` with the valuation fields `values` has (a row read from the database).

	Returns a new dict; raises `BuildError` when a value does not convert.
	"""
	build = _valuation_builders.get(version)
	if build is None:
		record = get_event_schema(DOCTYPE, version).document_schema
		fields = [f for f in record["fields"] if f["name"] in VALUATION_FIELDS]
		build = _valuation_builders[version] = record_builder({**record, "fields": fields})
	built = build(dict(values))
	return {**document, **{field: built[field] for field in VALUATION_FIELDS if field in values}}
