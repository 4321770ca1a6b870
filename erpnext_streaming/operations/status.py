"""What the stream is doing: counts, ages, last delivery, per-topic totals, health.

`collect` reads the Event Log with index-friendly queries only (the `(status, name)` index
makes "oldest of a status" and "newest Sent" one dive each). `full=False` is the often-polled
health endpoint's form: it counts only undelivered rows and skips the per-topic table (a
grouped scan of the log). Dead letters degrade health while they are new
(`DEAD_LETTER_WINDOW_SECONDS`); older ones wait for a decision without making the stream look
unhealthy for ever. `health_payload` and `render_text` read nothing: `operations.site` adds
the broker check and the heartbeat.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from erpnext_streaming.constants import CURSOR_TABLE, EVENT_LOG_TABLE, Status
from erpnext_streaming.delivery import bundles
from erpnext_streaming.delivery.policy import HELD_PREFIX

_T = f"`{EVENT_LOG_TABLE}`"
# how many of the newest Sent rows "last sent" looks at (a requeued old row is sent late)
LAST_SENT_WINDOW = 1000
DEFAULT_MAX_LAG_SECONDS = 300.0
DEAD_LETTER_WINDOW_SECONDS = 3600


class Health:
	OK = "ok"  # enabled, broker reachable, nothing waiting too long, no new dead letters
	DEGRADED = "degraded"  # reachable, but events wait too long, are held, or went Dead lately
	DOWN = "down"  # the broker cannot be reached
	DISABLED = "disabled"  # streaming is switched off in Streaming Settings


@dataclass
class StatusReport:
	now: datetime
	counts: dict[str, int]
	oldest: dict[str, datetime | None]  # Queued and Failed: creation of the oldest row
	last_sent_at: datetime | None
	last_error: dict[str, Any] | None
	per_topic: list[tuple[str, dict[str, int]]] = field(default_factory=list)
	enabled: bool = True
	broker: dict[str, Any] | None = None  # {"reachable", "brokers", "cluster_id", "error"}
	drainer: dict[str, Any] | None = None  # {"running": bool}
	jobs: list[dict[str, Any]] = field(default_factory=list)  # unfinished backfills/revaluations
	held: dict[str, str] = field(default_factory=dict)  # company -> why the cluster refuses it
	new_dead: int = 0  # Dead rows that died within `dead_window` seconds
	dead_window: int = DEAD_LETTER_WINDOW_SECONDS

	def age(self, status: str) -> float | None:
		oldest = self.oldest.get(status)
		return None if oldest is None else max(0.0, (self.now - oldest).total_seconds())

	@property
	def lag_seconds(self) -> float | None:
		"""Age of the oldest event not yet delivered (Queued or Failed)."""
		ages = [a for a in (self.age(Status.QUEUED), self.age(Status.FAILED)) if a is not None]
		return max(ages) if ages else None

	@property
	def pending(self) -> int:
		return self.counts.get(Status.QUEUED, 0) + self.counts.get(Status.FAILED, 0)


def counts(db: Any, sent: bool = True) -> dict[str, int]:
	"""Rows per status; without `sent`, only the undelivered ones (an index range)."""
	wanted = Status.ALL if sent else (Status.QUEUED, Status.FAILED, Status.DEAD)
	where = "" if sent else f" WHERE `status` IN ({', '.join(['%s'] * len(wanted))})"
	found = dict(
		db.sql(f"SELECT `status`, COUNT(*) FROM {_T}{where} GROUP BY `status`", () if sent else wanted)
	)
	return {status: int(found.get(status, 0)) for status in wanted}


def new_dead_letters(db: Any, since: datetime) -> int:
	rows = db.sql(f"SELECT COUNT(*) FROM {_T} WHERE `status` = %s AND `modified` >= %s", (Status.DEAD, since))
	return int(rows[0][0])


def oldest(db: Any, status: str) -> datetime | None:
	"""Creation of the oldest row of `status`; for Queued, of the oldest event not delivered
	yet (a delivered row stays Queued until its receipt is settled, delivery/bundles.py)."""
	if status == Status.QUEUED:
		return bundles.oldest_undelivered(db)
	rows = db.sql(f"SELECT `creation` FROM {_T} WHERE `status` = %s ORDER BY `name` LIMIT 1", (status,))
	return rows[0][0] if rows else None


def last_sent_at(db: Any) -> datetime | None:
	rows = db.sql(
		f"SELECT MAX(`sent_at`) FROM (SELECT `sent_at` FROM {_T} WHERE `status` = %s "
		"ORDER BY `name` DESC LIMIT %s) AS newest",
		(Status.SENT, LAST_SENT_WINDOW),
	)
	return rows[0][0] if rows else None


def last_error(db: Any) -> dict[str, Any] | None:
	"""The most recently changed Failed or Dead row with its error (newest of each status)."""
	candidates = []
	for status in (Status.FAILED, Status.DEAD):
		candidates += db.sql(
			f"SELECT `name`, `status`, `modified`, `attempts`, `reference_doctype`, `reference_name`, "
			f"`last_error` FROM {_T} WHERE `status` = %s ORDER BY `name` DESC LIMIT 1",
			(status,),
			as_dict=True,
		)
	if not candidates:
		return None
	row = max(candidates, key=lambda r: (r["modified"] or datetime.min, r["name"]))
	return {
		"event_log": row["name"],
		"status": row["status"],
		"at": row["modified"],
		"attempts": row["attempts"],
		"reference": f"{row['reference_doctype']} {row['reference_name']}",
		"error": row["last_error"] or "",
	}


def per_topic(db: Any) -> list[tuple[str, dict[str, int]]]:
	table: dict[str, dict[str, int]] = {}
	for topic, status, count in db.sql(
		f"SELECT `topic`, `status`, COUNT(*) FROM {_T} GROUP BY `topic`, `status` ORDER BY `topic`"
	):
		table.setdefault(topic or "", dict.fromkeys(Status.ALL, 0))[status] = int(count)
	return sorted(table.items())


def held(db: Any) -> dict[str, str]:
	"""Companies whose delivery waits for an admin of the cluster (a missing ACL or topic):
	their cursor's error is a held one (`policy.HELD_CODES`); a delivery clears it."""
	rows = db.sql(
		f"SELECT `company`, `last_error` FROM `{CURSOR_TABLE}` WHERE `last_error` LIKE %s ORDER BY `company`",
		(f"{HELD_PREFIX}%",),
	)
	return {company: error.removeprefix(HELD_PREFIX) for company, error in rows}


def collect(
	db: Any, now: datetime, full: bool = True, dead_window: int = DEAD_LETTER_WINDOW_SECONDS
) -> StatusReport:
	return StatusReport(
		now=now,
		counts=counts(db, sent=full),
		oldest={s: oldest(db, s) for s in (Status.QUEUED, Status.FAILED)},
		last_sent_at=last_sent_at(db),
		last_error=last_error(db),
		per_topic=per_topic(db) if full else [],
		held=held(db),
		new_dead=new_dead_letters(db, now - timedelta(seconds=dead_window)),
		dead_window=dead_window,
	)


def _iso(moment: datetime | None) -> str | None:
	return moment.isoformat(sep=" ", timespec="seconds") if moment else None


def assess(report: StatusReport, max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS) -> tuple[str, list[str]]:
	"""The overall health and the reasons it is not ok."""
	if not report.enabled:
		return Health.DISABLED, ["streaming is disabled in Streaming Settings"]
	reasons = []
	if report.broker is not None and not report.broker.get("reachable"):
		reasons.append(f"Kafka is not reachable: {report.broker.get('error') or 'no answer'}")
	lag = report.lag_seconds
	if lag is not None and lag > max_lag_seconds:
		reasons.append(f"the oldest undelivered event waits {lag:.0f} s (limit {max_lag_seconds:.0f} s)")
	for company, error in report.held.items():
		reasons.append(f"delivery for {company} is held until fixed on the cluster: {error}")
	if report.new_dead:
		reasons.append(f"{report.new_dead} new dead letter(s) in the last {report.dead_window} s")
	if report.broker is not None and not report.broker.get("reachable"):
		return Health.DOWN, reasons
	return (Health.DEGRADED if reasons else Health.OK), reasons


def attention(report: StatusReport) -> list[str]:
	"""What waits for a person without degrading the stream."""
	waiting = report.counts.get(Status.DEAD, 0) - report.new_dead
	return [f"{waiting} dead letter(s) wait for a decision (requeue, or leave them)"] if waiting > 0 else []


def health_payload(report: StatusReport, max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS) -> dict:
	"""JSON for external monitoring (`api.health`): plain values only, no configuration."""
	status, reasons = assess(report, max_lag_seconds)
	error = dict(report.last_error) if report.last_error else None
	if error:
		error["at"] = _iso(error["at"])
	return {
		"status": status,
		"healthy": status == Health.OK,
		"reasons": reasons,
		"checked_at": _iso(report.now),
		"enabled": report.enabled,
		"counts": dict(report.counts),
		"pending": report.pending,
		"lag_seconds": _round(report.lag_seconds),
		"oldest_queued_seconds": _round(report.age(Status.QUEUED)),
		"oldest_failed_seconds": _round(report.age(Status.FAILED)),
		"max_lag_seconds": max_lag_seconds,
		"last_sent_at": _iso(report.last_sent_at),
		"last_error": error,
		"dead_letters": {
			"waiting": report.counts.get(Status.DEAD, 0),
			"new": report.new_dead,
			"window_seconds": report.dead_window,
		},
		"attention": attention(report),
		"broker": report.broker,
		"drainer": report.drainer,
	}


def _round(value: float | None) -> float | None:
	return None if value is None else round(value, 3)


def short_age(seconds: float | None) -> str:
	if seconds is None:
		return "-"
	seconds = int(seconds)
	if seconds < 60:
		return f"{seconds}s"
	minutes, seconds = divmod(seconds, 60)
	if minutes < 60:
		return f"{minutes}m {seconds:02d}s"
	hours, minutes = divmod(minutes, 60)
	if hours < 48:
		return f"{hours}h {minutes:02d}m"
	return f"{hours // 24}d {hours % 24}h"


def render_text(report: StatusReport, max_lag_seconds: float = DEFAULT_MAX_LAG_SECONDS) -> str:
	status, reasons = assess(report, max_lag_seconds)
	lines = [f"Streaming: {status.upper()}" + (f" ({'; '.join(reasons)})" if reasons else "")]
	lines += [f"Attention: {note}" for note in attention(report)]
	lines.append("")
	lines.append("Event Log")
	for name in Status.ALL:
		lines.append(f"  {name:<8}{report.counts.get(name, 0):>12,}")
	lines.append(f"  oldest Queued:  {short_age(report.age(Status.QUEUED))}")
	lines.append(f"  oldest Failed:  {short_age(report.age(Status.FAILED))}")
	lines.append(f"  last sent:      {_iso(report.last_sent_at) or 'never'}")
	if report.last_error:
		e = report.last_error
		lines.append(
			f"  last error:     Event Log {e['event_log']} ({e['status']}, {e['reference']}, "
			f"{_iso(e['at'])}): {e['error']}"
		)
	if report.per_topic:
		lines.append("")
		width = max(len("topic"), *(len(t) for t, _ in report.per_topic))
		lines.append(f"  {'topic':<{width}}" + "".join(f"{s:>10}" for s in Status.ALL))
		for topic, by_status in report.per_topic:
			lines.append(f"  {topic:<{width}}" + "".join(f"{by_status.get(s, 0):>10,}" for s in Status.ALL))
	if report.broker is not None:
		lines.append("")
		broker = report.broker
		if broker.get("reachable"):
			lines.append(
				f"Kafka: reachable (cluster {broker.get('cluster_id') or '?'}, {broker.get('brokers', 0)} broker(s))"
			)
		else:
			lines.append(f"Kafka: NOT reachable: {broker.get('error') or 'no answer'}")
	if report.drainer is not None:
		lines.append(f"Drainer: {'running' if report.drainer.get('running') else 'not running'}")
	if report.jobs:
		lines.append("")
		lines.append("Backfills and revaluations not finished")
		for job in report.jobs:
			lines.append(
				f"  #{job['name']} {job['kind']} {job['reference_doctype'] or ''} {job['status']}: "
				f"{job['processed']:,}/{job['total']:,}"
				+ (f" ({job['last_error']})" if job.get("last_error") else "")
			)
	return "\n".join(lines) + "\n"


def per_minute(db: Any, now: datetime, minutes: int = 60) -> dict[str, Any]:
	"""Events per minute by status over the last `minutes`, by each row's last change
	(`modified`, indexed): Sent = delivered that minute, Failed/Dead = failed that minute,
	Queued = written (or requeued) that minute and still waiting. Frappe chart data."""
	end = now.replace(second=0, microsecond=0)
	start = end - timedelta(minutes=minutes - 1)
	slots = [start + timedelta(minutes=i) for i in range(minutes)]
	index = {slot.strftime("%Y-%m-%d %H:%M"): i for i, slot in enumerate(slots)}
	values = {status: [0] * minutes for status in Status.ALL}
	for minute, status, count in db.sql(
		f"SELECT DATE_FORMAT(`modified`, '%%Y-%%m-%%d %%H:%%i') AS `minute`, `status`, COUNT(*) FROM {_T} "
		"WHERE `modified` >= %s GROUP BY `minute`, `status`",
		(start,),
	):
		if minute in index and status in values:
			values[status][index[minute]] = int(count)
	return {
		"labels": [slot.strftime("%H:%M") for slot in slots],
		"datasets": [{"name": status, "values": values[status]} for status in Status.ALL],
	}
