"""Threshold alerts that fire once per crossing.

    reorder = ThresholdAlerts({("Acme", "SKU-1", "Stores - A"): 20.0})
    key = stock.apply(event)
    if key and (alert := reorder.observe(key, stock.on_hand(key), event.event_time)):
        notify(alert)

A key is in alarm from the moment its value goes below its threshold (or above, with
`below=False`) until it comes back past the threshold plus `hysteresis`; `observe` returns
an `Alert` only on the way in. Re-observing the same value, duplicates and small wobbles
around the threshold fire nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Alert:
	key: Hashable
	value: float
	threshold: float
	at: datetime | None
	crossing: int  # the how-many-th crossing of this key


class ThresholdAlerts:
	def __init__(
		self,
		thresholds: Mapping[Hashable, float] | Callable[[Hashable], float | None],
		below: bool = True,
		hysteresis: float = 0.0,
	):
		self._threshold = thresholds.get if isinstance(thresholds, Mapping) else thresholds
		self.below = below
		self.hysteresis = hysteresis
		self.in_alarm: set[Hashable] = set()
		self.crossings: dict[Hashable, int] = {}
		self.fired: list[Alert] = []

	def observe(self, key: Hashable, value: float, at: datetime | None = None) -> Alert | None:
		threshold = self._threshold(key)
		if threshold is None:
			return None
		beyond = value < threshold if self.below else value > threshold
		if key in self.in_alarm:
			back = (
				value >= threshold + self.hysteresis if self.below else value <= threshold - self.hysteresis
			)
			if back:
				self.in_alarm.discard(key)
			return None
		if not beyond:
			return None
		self.in_alarm.add(key)
		self.crossings[key] = self.crossings.get(key, 0) + 1
		alert = Alert(key, value, threshold, at, self.crossings[key])
		self.fired.append(alert)
		return alert
