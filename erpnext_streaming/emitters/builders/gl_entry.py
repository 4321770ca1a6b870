"""GL Entry -> the `document` record of its event schema. One ledger row. A reversal row of a cancel has debit and credit swapped and is_cancelled true."""

from __future__ import annotations

from typing import Any

from erpnext_streaming.emitters.builders.registry import get_builder

DOCTYPE = "GL Entry"


def to_dict(doc: Any) -> dict:
	return get_builder(DOCTYPE)(doc)
