"""MariaDB helpers shared by the outbox, the drainer and the operations: named locks, the
session's isolation level, server error numbers, the server's UTC clock.

Named locks (`GET_LOCK`) serialize claimers and settlers without row locks, so nothing a
drainer does waits on a user transaction or makes one wait (docs/architecture.md,
"Claims, leases and locks").
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

ER_NO_SUCH_TABLE = 1146  # Table '...' doesn't exist
ER_LOCK_DEADLOCK = 1213  # the victim's whole transaction was rolled back
_MAX_LOCK_NAME = 64  # MariaDB's limit for GET_LOCK names
_ISOLATION_LEVELS = frozenset({"READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"})


class Database(Protocol):
	"""The part of `frappe.db` the outbox uses."""

	def sql(self, query: str, values: Any = (), as_dict: bool = False) -> Any: ...


class TransactionalDatabase(Database, Protocol):
	def commit(self) -> None: ...

	def rollback(self) -> None: ...


_BUDGET_ATTRIBUTE = "_erpnext_streaming_statement_budget"
MIN_STATEMENT_BUDGET = 64 * 1024


def statement_budget(db: Database) -> int:
	"""How many bytes of values one statement may carry: half the server's
	`max_allowed_packet` (a statement larger than it is refused with error 1153 and the
	connection is dropped), the other half left for escaping and the statement's own text.
	Read once per connection: MariaDB copies the global value into a session when it
	connects, and the session value cannot change (MariaDB "max_allowed_packet")."""
	budget = getattr(db, _BUDGET_ATTRIBUTE, None)
	if budget is None:
		budget = max(int(db.sql("SELECT @@max_allowed_packet")[0][0]) // 2, MIN_STATEMENT_BUDGET)
		with contextlib.suppress(AttributeError):  # a database object without attributes: read it each time
			setattr(db, _BUDGET_ATTRIBUTE, budget)
	return budget


def value_bytes(value: Any) -> int:
	"""At most how many bytes a value takes in a statement: a string's UTF-8 bytes, twice
	over for escapes; a number or a date a few dozen."""
	if isinstance(value, str):
		return 2 * (len(value) if value.isascii() else len(value.encode("utf-8"))) + 3
	if isinstance(value, bytes):
		return 2 * len(value) + 3
	return 32


def chunks_by_bytes(items: Sequence[Any], size: Any, budget: int) -> Iterator[list[Any]]:
	"""`items` in order, cut into consecutive lists whose `size(item)` add up to at most
	`budget` (an item larger than the budget alone in its list)."""
	chunk: list[Any] = []
	total = 0
	for item in items:
		item_size = size(item)
		if chunk and total + item_size > budget:
			yield chunk
			chunk, total = [], 0
		chunk.append(item)
		total += item_size
	if chunk:
		yield chunk


def placeholders(values: Sequence[Any]) -> str:
	"""`%s, %s, ...`: one parameter per value, for an `IN (...)` list."""
	return ", ".join(["%s"] * len(values))


def is_mariadb_error(error: BaseException, number: int) -> bool:
	"""Is `error` (or what it was raised from) MariaDB's error `number`? PyMySQL's error
	carries the server's number first; `frappe.db.sql` raises some of its own from it
	(QueryDeadlockError)."""
	seen: set[int] = set()
	current: BaseException | None = error
	while current is not None and id(current) not in seen:
		seen.add(id(current))
		args = getattr(current, "args", ())
		if args and args[0] == number:
			return True
		current = current.__cause__ or current.__context__
	return False


def lock_name(db: Database, purpose: str) -> str:
	"""A server-wide named lock for this site's database (several sites share a server)."""
	database = db.sql("SELECT DATABASE()")[0][0] or ""
	name = f"erpnext_streaming:{purpose}:{database}"
	if len(name) > _MAX_LOCK_NAME:
		name = f"erpnext_streaming:{purpose}:{hashlib.sha1(database.encode()).hexdigest()[:24]}"
	return name


def get_lock(db: Database, name: str, timeout: float) -> bool:
	"""MariaDB GET_LOCK: held by this connection until `release_lock` or disconnect."""
	return db.sql("SELECT GET_LOCK(%s, %s)", (name, timeout))[0][0] == 1


def release_lock(db: Database, name: str) -> None:
	db.sql("SELECT RELEASE_LOCK(%s)", (name,))


def utc_now(db: Database) -> datetime:
	"""The database server's time in UTC (naive): the one clock every drainer and the sweeper
	read leases and retry times against, whatever their hosts' clocks, time zones or DST say."""
	return db.sql("SELECT UTC_TIMESTAMP(6)")[0][0]


def use_read_committed(db: Database) -> None:
	"""READ COMMITTED for the session's next transactions (the caller commits next): its
	SELECTs are consistent reads that lock nothing, and no statement takes gap or next-key
	locks, so user transactions inserting meanwhile never wait on it."""
	db.sql("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")


@contextlib.contextmanager
def read_committed(db: TransactionalDatabase) -> Iterator[None]:
	"""READ COMMITTED for the transactions of the block, on a connection that is not the
	drainer's (the sweeper's, the scheduler's): the session's level is restored after it.
	Commits on entry and on exit (Frappe's commit begins the next transaction at once)."""
	before = db.sql("SELECT @@SESSION.tx_isolation")[0][0]
	use_read_committed(db)
	db.commit()
	try:
		yield
	finally:
		level = str(before).replace("-", " ")
		if level in _ISOLATION_LEVELS:
			db.sql(f"SET SESSION TRANSACTION ISOLATION LEVEL {level}")
		db.commit()
