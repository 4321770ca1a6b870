"""The sweeper (scheduler, every minute): the safety net under the after-commit wake-up.

It releases expired leases (a drainer died mid-batch) and, when a drainer would have
something to do (`outbox.has_pending_work`: a claimable row, or a Dead row whose
dead-letter copy is pending), makes sure a drainer is queued or running. It covers Redis being down at commit time, a drainer that
died, and a Failed row that became due after the drainer left. Concurrent runs are
harmless: a MariaDB named lock lets one run at a time (the other returns at once), lease
releases are conditional primary-key updates, and the drainer job is deduplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from erpnext_streaming import outbox


@dataclass(frozen=True)
class SweepResult:
	ran: bool
	released: int = 0
	pending: bool = False
	drainer: str = ""


def sweep(db: outbox.TransactionalDatabase, now: datetime, ensure_drainer: Callable[[], str]) -> SweepResult:
	lock = outbox.lock_name(db, "sweep")
	if not outbox.get_lock(db, lock, 0):
		return SweepResult(ran=False)
	try:
		released = outbox.release_expired_leases(db, now)
		db.commit()
		pending = outbox.has_pending_work(db, now)
		db.commit()
		return SweepResult(True, len(released), pending, ensure_drainer() if pending else "not needed")
	finally:
		outbox.release_lock(db, lock)
