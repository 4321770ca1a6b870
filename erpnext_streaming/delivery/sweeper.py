"""The sweeper (scheduler, every minute): the safety net under the after-commit wake-up.

It releases expired leases, settles receipts a dead drainer left, and makes sure a drainer
is queued or running when a company's next bundle is due or a dead-letter copy is pending:
this covers Redis down at commit time, a dead drainer, and a retry due after the drainer
left. A MariaDB named lock lets one run at a time. Leases and retry times are read against
the database's UTC clock (`mariadb.utc_now`, once per sweep); `now` (the site's time) is for
`modified`, `sent_at` and how old a lost row is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from erpnext_streaming.constants import BUNDLE_TABLE
from erpnext_streaming.delivery import bundles
from erpnext_streaming.outbox import outcomes
from erpnext_streaming.outbox.mariadb import (
	Database,
	TransactionalDatabase,
	get_lock,
	lock_name,
	read_committed,
	release_lock,
	utc_now,
)
from erpnext_streaming.outbox.records import MessageContext
from erpnext_streaming.outbox.requeue import queue_pending

# a pending row no bundle holds is called lost after this long (a commit writes both at once)
LOST_AFTER = timedelta(minutes=10)
# lost rows are looked for only while the delivery queue is short (it reads every bundle)
LOST_SCAN_BUNDLES = 1000


@dataclass(frozen=True)
class SweepResult:
	ran: bool
	released: int = 0
	pending: bool = False
	drainer: str = ""
	lost: int = 0


def sweep(
	db: TransactionalDatabase,
	now: datetime,
	ensure_drainer: Callable[[], str],
	owner_alive: Callable[[str], bool] = lambda owner: True,
	context: MessageContext | None = None,
) -> SweepResult:
	lock = lock_name(db, "sweep")
	if not get_lock(db, lock, 0):
		return SweepResult(ran=False)
	try:
		utc = utc_now(db)
		released = [
			*release_dead_owners(db, utc, owner_alive),
			*bundles.release_expired(db, utc),
			*outcomes.release_expired_leases(db, utc),
		]
		db.commit()
		# READ COMMITTED, as the drainer: its deletes take no gap lock a user's INSERT waits on
		with read_committed(db):
			while bundles.settle(db, now):
				db.commit()
			db.commit()
		lost = queue_lost(db, now, context) if context else 0
		db.commit()
		pending = has_pending_work(db)
		db.commit()
		drainer = ensure_drainer() if pending else "not needed"
		return SweepResult(True, len(released), pending, drainer, lost)
	finally:
		release_lock(db, lock)


def has_pending_work(db: Database, utc: datetime | None = None) -> bool:
	"""Is there anything a drainer could do now: a company's next bundle due and not leased
	by a live drainer, or a Dead row whose dead-letter copy is pending and not in flight, at
	`utc` (the database's now unless given)?"""
	utc = utc or utc_now(db)
	return bundles.deliverable(db, utc) or outcomes.dead_letters_pending(db, utc)


def release_dead_owners(db: Database, utc: datetime, owner_alive: Callable[[str], bool]) -> list[str]:
	"""Free at once the leases of drainers whose process is gone (the row leases unexpired
	at `utc`, the database's now); the dead owners."""
	dead = sorted(o for o in bundles.lease_owners(db) | outcomes.lease_owners(db, utc) if not owner_alive(o))
	for owner in dead:
		bundles.release(db, owner)
		outcomes.release_owner(db, owner, utc)
	return dead


def queue_lost(db: TransactionalDatabase, now: datetime, context: MessageContext) -> int:
	"""Bundles for pending rows that no bundle holds (`outbox.requeue.queue_pending`), looked
	for on a short delivery queue only: during a backlog, once it has drained."""
	db.commit()  # one snapshot for the rows and the bundles
	if len(db.sql(f"SELECT 1 FROM `{BUNDLE_TABLE}` LIMIT %s", (LOST_SCAN_BUNDLES + 1,))) > LOST_SCAN_BUNDLES:
		return 0
	return queue_pending(db, now, context, before=now - LOST_AFTER)
