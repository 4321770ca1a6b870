"""Marking delivered batches Sent beside the drainer, on a connection of its own.

A batch's Sent UPDATE writes every one of its rows (status, partition, offset, sent_at),
and a row UPDATE in MariaDB costs about as much as everything else the drainer does for
an event (benchmarks/RESULTS.md, P3). Done in line, the database and the drainer take
turns; done here, in one worker thread, the UPDATE of batch n runs in MariaDB while the
drainer claims, builds and produces batch n+1 (PyMySQL waits on the socket without the
GIL).

At most one mark is pending: `submit` first waits for the previous one, so the marks
commit in batch order and the drainer never gets more than one batch ahead of its
bookkeeping. A mark that fails is raised in the drainer's thread, at its next `submit`
or `wait`; its rows stay Queued under the drainer's lease on their company's first row
and are delivered again after the lease expires (at least once).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime

from erpnext_streaming import outbox
from erpnext_streaming.outbox import Published


class Marker:
	def __init__(self, db: outbox.TransactionalDatabase):
		self.db = db
		self._executor: ThreadPoolExecutor | None = None
		self._pending: Future | None = None

	def prepare(self) -> None:
		"""READ COMMITTED, like the drainer's own connection (outbox: no gap locks)."""
		outbox.use_read_committed(self.db)
		self.db.commit()

	def submit(self, sent: Sequence[Published], now: datetime) -> None:
		"""Mark `sent` in the thread, after the previous mark."""
		self.wait()
		if not sent:
			return
		if self._executor is None:
			self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="erpnext_streaming-marker")
		self._pending = self._executor.submit(self._mark, list(sent), now)

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

	def _mark(self, sent: list[Published], now: datetime) -> None:
		try:
			outbox.mark_sent(self.db, sent, now)
			self.db.commit()
		except Exception:
			self.db.rollback()
			raise
