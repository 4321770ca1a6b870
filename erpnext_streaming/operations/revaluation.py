"""Revaluation after a stock repost: which Stock Ledger Entries a Repost Item Valuation
rewrote, and how they are emitted again (docs/operations.md, "Stock reposts").

What ERPNext does (erpnext/stock/doctype/repost_item_valuation, erpnext/stock/stock_ledger.py,
v15): `repost()` walks `items_to_be_repost` (item_code, warehouse, posting_date,
posting_time), appending the pairs that depend on a reposted one as it runs; for each,
`update_entries_after` rewrites every non-cancelled SLE of the pair from that posting
datetime onward with `db_update()` (no hooks) and `modified = now()`. GL entries are posted
again and stream on their own. `set_status("Completed")` is a `db_set`, so the repost's
`on_change` fires while its full list is still there.

So the scope is that list, deduplicated to the earliest start per (item, warehouse), each
row emitted as a `revalued` SLE event routed like the catalog's `posted` SLE events. Its id
is the usual UUIDv5 over the new `modified`, so each repost gives new ids and a resumed run
repeats none. `LedgerSource` walks the pairs with a keyset on (posting_datetime, creation,
name), served by ERPNext's index `(item_code, warehouse, posting_datetime, creation)`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from erpnext_streaming.catalog import Route
from erpnext_streaming.emitters.builders.compiler import to_date, to_datetime, to_time

SLE = "Stock Ledger Entry"
REVALUED = "revalued"
REVALUE_METHOD = "on_repost"  # not a doc_events method: the route's name for this event
REPOST_DOCTYPE = "Repost Item Valuation"
_SLE = f"`tab{SLE}`"


def revaluation_route(posted: Route) -> Route:
	"""The route of `revalued` events: the SLE `posted` route with another event type."""
	return dataclasses.replace(posted, method=REVALUE_METHOD, event_type=REVALUED)


def start_of(posting_date: Any, posting_time: Any) -> str:
	"""`YYYY-MM-DD HH:MM:SS.ffffff` of a posting date and time (ERPNext's posting_datetime)."""
	day = to_date(posting_date)
	clock = to_time(posting_time) if posting_time not in (None, "") else time()
	return datetime.combine(day, clock).isoformat(sep=" ", timespec="microseconds")


def scope(
	based_on: str,
	item_code: str | None,
	warehouse: str | None,
	posting_date: Any,
	posting_time: Any,
	items_to_be_repost: Iterable[Any] = (),
	voucher_pairs: Iterable[Any] = (),
) -> list[list[str]]:
	"""[[item_code, warehouse, start], ...] sorted, one per pair with its earliest start.

	`items_to_be_repost`: the repost's final list (dicts with item_code, warehouse,
	posting_date, posting_time). Without it: the Repost Item Valuation's own pair ("Item
	and Warehouse"), or `voucher_pairs` (the voucher's SLE pairs, "Transaction").
	"""
	entries = list(items_to_be_repost)
	if not entries:
		if based_on == "Item and Warehouse" and item_code and warehouse:
			entries = [
				{
					"item_code": item_code,
					"warehouse": warehouse,
					"posting_date": posting_date,
					"posting_time": posting_time,
				}
			]
		else:
			entries = list(voucher_pairs)
	earliest: dict[tuple[str, str], str] = {}
	for entry in entries:
		get = entry.get if hasattr(entry, "get") else lambda k, e=entry: getattr(e, k, None)
		item, store, day = get("item_code"), get("warehouse"), get("posting_date")
		if not item or not store or not day:
			continue
		start = start_of(day, get("posting_time"))
		key = (str(item), str(store))
		if key not in earliest or start < earliest[key]:
			earliest[key] = start
	return [[item, store, start] for (item, store), start in sorted(earliest.items())]


def voucher_pairs(db: Any, voucher_type: str, voucher_no: str) -> list[dict]:
	"""The (item, warehouse) pairs of a voucher's SLEs with their earliest posting datetime."""
	return [
		{
			"item_code": r[0],
			"warehouse": r[1],
			"posting_date": to_datetime(r[2]).date(),
			"posting_time": to_datetime(r[2]).time(),
		}
		for r in db.sql(
			f"SELECT `item_code`, `warehouse`, MIN(`posting_datetime`) FROM {_SLE} "
			"WHERE `voucher_type` = %s AND `voucher_no` = %s GROUP BY `item_code`, `warehouse`",
			(voucher_type, voucher_no),
		)
		if r[2] is not None
	]


_AFTER = (
	"(`posting_datetime` > %s OR (`posting_datetime` = %s AND (`creation` > %s "
	"OR (`creation` = %s AND `name` > %s))))"
)


@dataclass(frozen=True)
class LedgerSource:
	"""The SLEs of a revaluation scope; checkpoint {"pair": i, "after": [datetime, creation, name]}."""

	pairs: tuple[tuple[str, str, str], ...]

	@classmethod
	def of(cls, pairs: Sequence[Sequence[str]]) -> LedgerSource:
		return cls(tuple((p[0], p[1], p[2]) for p in pairs))

	def count(self, db: Any) -> int:
		return sum(
			int(
				db.sql(
					f"SELECT COUNT(*) FROM {_SLE} WHERE `item_code` = %s AND `warehouse` = %s "
					"AND `is_cancelled` = 0 AND `posting_datetime` >= %s",
					pair,
				)[0][0]
			)
			for pair in self.pairs
		)

	def fetch(self, db: Any, checkpoint: Any, limit: int) -> tuple[list[dict], Any]:
		index = int((checkpoint or {}).get("pair") or 0)
		after = (checkpoint or {}).get("after")
		rows: list[dict] = []
		while index < len(self.pairs) and len(rows) < limit:
			item, store, start = self.pairs[index]
			conditions = [
				"`item_code` = %s",
				"`warehouse` = %s",
				"`is_cancelled` = 0",
				"`posting_datetime` >= %s",
			]
			values: list[Any] = [item, store, start]
			if after:
				conditions.append(_AFTER)
				values += [after[0], after[0], after[1], after[1], after[2]]
			wanted = limit - len(rows)
			got = db.sql(
				f"SELECT * FROM {_SLE} WHERE {' AND '.join(conditions)} "
				"ORDER BY `posting_datetime`, `creation`, `name` LIMIT %s",
				[*values, wanted],
				as_dict=True,
			)
			rows += [dict(r, doctype=SLE) for r in got]
			if len(got) < wanted:
				index, after = index + 1, None
			else:
				last = got[-1]
				after = [_text(last["posting_datetime"]), _text(last["creation"]), last["name"]]
		return rows, {"pair": index, "after": after}


def _text(value: Any) -> str:
	return to_datetime(value).isoformat(sep=" ", timespec="microseconds")
