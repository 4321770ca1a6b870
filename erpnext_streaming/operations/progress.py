"""A progress bar with count, percentage, rate and ETA for long bench commands.

Not `click.progressbar`: off a terminal click writes no progress at all (a backfill logged to
a file would show nothing until it ends), and it counts a resumed run's checkpoint as done in
the first instant, so its rate and ETA are far off. Here the rate counts from where the run
resumed; off a terminal a line is written per whole percent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TextIO

BAR_WIDTH = 20


class Progress:
	def __init__(
		self,
		label: str,
		total: int,
		stream: TextIO,
		clock: Callable[[], float] = time.monotonic,
		interval: float = 0.5,
		start: int = 0,
		tty: bool | None = None,
	):
		self.label = label
		self.total = max(0, total)
		self.stream = stream
		self.clock = clock
		self.interval = interval
		self.tty = stream.isatty() if tty is None else tty
		self.done = start
		self._start_count = start
		self._started = clock()
		self._last_draw: float | None = None
		self._last_percent = -1
		self._closed = False

	@property
	def rate(self) -> float | None:
		"""Rows per second in this run (a resumed run counts from where it resumed)."""
		elapsed = self.clock() - self._started
		if elapsed <= 0:
			return None
		return (self.done - self._start_count) / elapsed

	@property
	def eta(self) -> float | None:
		rate = self.rate
		if not rate:
			return None
		return max(0, self.total - self.done) / rate

	def line(self) -> str:
		total = max(self.total, self.done)
		fraction = self.done / total if total else 1.0
		filled = int(BAR_WIDTH * fraction)
		rate, eta = self.rate, self.eta
		rate_text = f"{rate:,.0f}/s" if rate is not None else "-/s"
		eta_text = "--:--:--" if eta is None else str(timedelta(seconds=max(0, round(eta))))
		return (
			f"{self.label}  [{'#' * filled}{'.' * (BAR_WIDTH - filled)}]  {self.done:,}/{total:,}  "
			f"{fraction:4.0%}  {rate_text}  ETA {eta_text}"
		)

	def _percent(self) -> int:
		return int(100 * self.done / self.total) if self.total else 100

	def update(self, done: int) -> None:
		self.done = done
		now = self.clock()
		if self.tty:
			due = self._last_draw is None or now - self._last_draw >= self.interval or done >= self.total
		else:
			due = self._percent() > self._last_percent
		if due:
			self._draw()
			self._last_draw = now
			self._last_percent = self._percent()

	def _draw(self) -> None:
		if self.tty:
			self.stream.write("\r" + self.line())
		else:
			self.stream.write(self.line() + "\n")
		self.stream.flush()

	def close(self, message: str = "") -> None:
		"""Draw the final state (once) and end the line."""
		if self._closed:
			return
		self._closed = True
		if self._last_draw is None or self.tty or self.done < self.total:
			self._draw()
		if self.tty:
			self.stream.write("\n")
		if message:
			self.stream.write(message + "\n")
		self.stream.flush()
