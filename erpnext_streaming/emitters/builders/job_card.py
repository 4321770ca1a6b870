"""Job Card -> the `document` record of its event schema. The job card with its `time_logs`; correlate with the work order on work_order + operation_id."""

from __future__ import annotations

from typing import Any

from erpnext_streaming.emitters.builders.registry import get_builder

DOCTYPE = "Job Card"


def to_dict(doc: Any) -> dict:
	return get_builder(DOCTYPE)(doc)
