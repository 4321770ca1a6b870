"""Which historical documents a backfill visits, chunk by chunk (`jobs.Source`).

Each submitted document in scope is emitted with its submit event and the live event id
formula, so a document unchanged since its live event gets the very same id. Rows go in
primary-key order (the clustered index of every Frappe table); child tables are read in one
query per table per chunk. GL Entry and Stock Ledger Entry rows are inserted under temporary
hash names that ERPNext's hourly job renames, so backfill those after it has run
(docs/operations.md, "Backfill").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

DATE_COLUMNS = ("posting_date", "transaction_date")


class BackfillRefused(ValueError):
	"""The backfill cannot run as asked (nothing was written)."""


@dataclass(frozen=True)
class DocumentSource:
	doctype: str
	children: tuple[tuple[str, str], ...] = ()  # (table fieldname, child doctype)
	company: str = ""
	from_date: date | None = None
	to_date: date | None = None
	date_column: str = "creation"

	def _where(self) -> tuple[list[str], list[Any]]:
		conditions, values = ["`docstatus` = 1"], []
		if self.company:
			conditions.append("`company` = %s")
			values.append(self.company)
		if self.from_date:
			conditions.append(f"`{self.date_column}` >= %s")
			values.append(self.from_date)
		if self.to_date:  # creation is a datetime: up to the end of that day
			conditions.append(f"`{self.date_column}` < %s")
			values.append(self.to_date + timedelta(days=1))
		return conditions, values

	def count(self, db: Any) -> int:
		conditions, values = self._where()
		return int(
			db.sql(f"SELECT COUNT(*) FROM `tab{self.doctype}` WHERE {' AND '.join(conditions)}", values)[0][0]
		)

	def fetch(self, db: Any, checkpoint: Any, limit: int) -> tuple[list[dict], Any]:
		conditions, values = self._where()
		if checkpoint and checkpoint.get("after") is not None:
			conditions.append("`name` > %s")
			values.append(checkpoint["after"])
		rows = db.sql(
			f"SELECT * FROM `tab{self.doctype}` WHERE {' AND '.join(conditions)} ORDER BY `name` LIMIT %s",
			[*values, limit],
			as_dict=True,
		)
		if not rows:
			return [], checkpoint
		rows = [dict(row, doctype=self.doctype) for row in rows]
		self._attach_children(db, rows)
		return rows, {"after": rows[-1]["name"]}

	def _attach_children(self, db: Any, rows: list[dict]) -> None:
		if not self.children:
			return
		by_name = {row["name"]: row for row in rows}
		names = list(by_name)
		for fieldname, child in self.children:
			for row in rows:
				row[fieldname] = []
			for child_row in db.sql(
				f"SELECT * FROM `tab{child}` WHERE `parenttype` = %s AND `parentfield` = %s "
				f"AND `parent` IN ({', '.join(['%s'] * len(names))}) ORDER BY `parent`, `idx`",
				[self.doctype, fieldname, *names],
				as_dict=True,
			):
				by_name[child_row["parent"]][fieldname].append(dict(child_row, doctype=child))


def plan(
	db: Any,
	doctype: str,
	children: Sequence[tuple[str, str]] = (),
	company: str = "",
	from_date: date | None = None,
	to_date: date | None = None,
) -> DocumentSource:
	"""The source of a backfill, checked against the doctype's table."""
	try:
		columns = {row[0] for row in db.sql(f"SHOW COLUMNS FROM `tab{doctype}`")}
	except Exception:
		raise BackfillRefused(f"{doctype} has no table on this site")
	if "docstatus" not in columns:
		raise BackfillRefused(f"{doctype} has no docstatus column")
	if company and "company" not in columns:
		raise BackfillRefused(f"{doctype} has no company field; leave out --company")
	if from_date and to_date and from_date > to_date:
		raise BackfillRefused("--from-date is after --to-date")
	date_column = next((c for c in DATE_COLUMNS if c in columns), "creation")
	return DocumentSource(
		doctype=doctype,
		children=tuple(children),
		company=company or "",
		from_date=from_date,
		to_date=to_date,
		date_column=date_column,
	)
