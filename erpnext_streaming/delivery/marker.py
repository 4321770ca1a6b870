"""Recording delivered batches beside the drainer, on a connection of its own.

A delivered batch becomes one receipt and its companies' cursors move
(`bundles.record_delivered`, two statements). Done in line, the database and the drainer
take turns; done here, in one worker thread, the record of batch n is written while the
drainer claims and produces batch n+1 (PyMySQL waits on the socket without the GIL).

At most one record is pending: `submit` first waits for the previous one, so records
commit in batch order and the drainer never gets more than one batch ahead of its
bookkeeping. A record that fails is raised in the drainer's thread, at its next `submit`
or `wait`; the cursors did not move, so the batch's bundles are delivered again (at least
once). A record that MariaDB rolled back as a deadlock's victim is written again first:
the drainer's claim of the next batch writes the same cursor rows (their leases), in its
own order, at the same time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from erpnext_streaming.delivery import bundles
from erpnext_streaming.outbox.mariadb import (
	ER_LOCK_DEADLOCK,
	TransactionalDatabase,
	is_mariadb_error,
	use_read_committed,
)
from erpnext_streaming.outbox.records import Published

RECORD_ATTEMPTS = 3


def lost_a_deadlock(error: BaseException) -> bool:
	"""Was `error` MariaDB rolling the transaction back as a deadlock's victim?"""
	return is_mariadb_error(error, ER_LOCK_DEADLOCK)


class Marker:
	def __init__(self, db: TransactionalDatabase):
		self.db = db
		self._executor: ThreadPoolExecutor | None = None
		self._pending: Future | None = None

	def prepare(self) -> None:
		"""READ COMMITTED, like the drainer's own connection (outbox: no gap locks)."""
		use_read_committed(self.db)
		self.db.commit()

	def submit(self, sent: Sequence[Published], through: Mapping[str, int], now: datetime) -> None:
		"""Record `sent` and move the cursors to `through` in the thread, after the previous record."""
		self.wait()
		if not sent and not through:
			return
		if self._executor is None:
			self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="erpnext_streaming-marker")
		self._pending = self._executor.submit(self._mark, list(sent), dict(through), now)

	def wait(self) -> None:
		"""Until the pending mark is committed; raises its error, once."""
		pending, self._pending = self._pending, None
		if pending is not None:
			pending.result()

	def close(self) -> None:
		"""Wait for the pending mark (raising its error), stop the thread, close the connection."""
		try:
			self.wait()
		finally:
			if self._executor is not None:
				self._executor.shutdown(wait=True)
				self._executor = None
			close = getattr(self.db, "close", None)
			if close is not None:
				close()

	def _mark(self, sent: list[Published], through: dict[str, int], now: datetime) -> None:
		for attempt in range(1, RECORD_ATTEMPTS + 1):
			try:
				bundles.record_delivered(self.db, sent, through, now)
				self.db.commit()
				return
			except Exception as e:
				self.db.rollback()
				if attempt == RECORD_ATTEMPTS or not lost_a_deadlock(e):
					raise
