"""Sales Invoice -> the `document` record of its event schema. The invoice with its `items`; totals in transaction and company currency (`base_` fields), outstanding_amount in the party account currency."""

from __future__ import annotations

from typing import Any

from erpnext_streaming.emitters.builders.registry import get_builder

DOCTYPE = "Sales Invoice"


def to_dict(doc: Any) -> dict:
	return get_builder(DOCTYPE)(doc)
