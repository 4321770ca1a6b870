"""The sweeper (scheduler, every minute): the safety net under the after-commit wake-up.

It releases expired leases, settles receipts a dead drainer left, and makes sure a drainer
is queued or running when a company's next bundle is due or a dead-letter copy is pending:
this covers Redis down at commit time, a dead drainer, and a retry due after the drainer
left. A MariaDB named lock lets one run at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from erpnext_streaming.delivery import bundles
from erpnext_streaming.outbox.mariadb import (
	Database,
	TransactionalDatabase,
	get_lock,
	lock_name,
	read_committed,
	release_lock,
)
from erpnext_streaming.outbox.outcomes import dead_letters_pending, release_expired_leases


@dataclass(frozen=True)
class SweepResult:
	ran: bool
	released: int = 0
	pending: bool = False
	drainer: str = ""


def sweep(db: TransactionalDatabase, now: datetime, ensure_drainer: Callable[[], str]) -> SweepResult:
	lock = lock_name(db, "sweep")
	if not get_lock(db, lock, 0):
		return SweepResult(ran=False)
	try:
		released = [*bundles.release_expired(db, now), *release_expired_leases(db, now)]
		db.commit()
		# READ COMMITTED, as the drainer: its deletes take no gap lock a user's INSERT waits on
		with read_committed(db):
			while bundles.settle(db, now):
				db.commit()
			db.commit()
		pending = has_pending_work(db, now)
		db.commit()
		return SweepResult(True, len(released), pending, ensure_drainer() if pending else "not needed")
	finally:
		release_lock(db, lock)


def has_pending_work(db: Database, now: datetime) -> bool:
	"""Is there anything a drainer could do now: a company's next bundle due and not leased
	by a live drainer, or a Dead row whose dead-letter copy is pending and not in flight?"""
	return bundles.deliverable(db, now) or dead_letters_pending(db, now)
