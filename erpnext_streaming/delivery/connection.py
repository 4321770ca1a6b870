"""`outbox.mariadb.TransactionalDatabase` on a PyMySQL connection of its own.

The drainer marks delivered batches on a second connection, in a thread (`marker.py`),
while its own connection (`frappe.db` in a bench) claims the next batch. A Frappe
`Database` object is bound to the job's context (`frappe.local`, `frappe.flags`), so the
second connection is a plain PyMySQL one, made with Frappe's own connection settings
(`frappe.db.create_connection()`, see delivery/jobs.py): the same driver and credentials.
"""

from __future__ import annotations

from typing import Any


class Connection:
	def __init__(self, connection: Any):
		self._conn = connection
		self._conn.autocommit(False)
		self._cursor = connection.cursor()

	def sql(self, query: str, values: Any = (), as_dict: bool = False) -> Any:
		self._cursor.execute(query, values if values != () else None)
		if not self._cursor.description:
			return ()
		rows = self._cursor.fetchall()
		if as_dict:
			columns = [c[0] for c in self._cursor.description]
			return [dict(zip(columns, row, strict=True)) for row in rows]
		return rows

	def commit(self) -> None:
		self._conn.commit()

	def rollback(self) -> None:
		self._conn.rollback()

	def close(self) -> None:
		try:
			self._conn.close()
		except Exception:
			pass
