"""Work Order -> the `document` record of its event schema. The work order with its `operations` and `required_items`; progress is status, produced_qty, material_transferred_for_manufacturing and process_loss_qty."""

from __future__ import annotations

from typing import Any

from erpnext_streaming.emitters.builders.registry import get_builder

DOCTYPE = "Work Order"


def to_dict(doc: Any) -> dict:
	return get_builder(DOCTYPE)(doc)
