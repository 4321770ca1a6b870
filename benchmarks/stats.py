"""Medians, spread, percentiles and ratio gates: the numbers a result file carries."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
	"""The q-th percentile (0-100) by linear interpolation between closest ranks."""
	ordered = sorted(values)
	if not ordered:
		raise ValueError("no values")
	position = (len(ordered) - 1) * q / 100
	low = int(position)
	high = min(low + 1, len(ordered) - 1)
	return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Sequence[float]) -> dict:
	"""Median and spread of repeated measurements (spread = (max - min) / median)."""
	median = statistics.median(values)
	return {
		"n": len(values),
		"median": median,
		"min": min(values),
		"max": max(values),
		"spread": (max(values) - min(values)) / median if median else 0.0,
		"values": list(values),
	}


def interleave(rounds: int, variants: dict[str, Callable[[int], float]]) -> dict[str, list[float]]:
	"""Run each variant once per round, in turn (A B A B ...), so drift on a shared machine
	hits every variant alike. A variant is `f(round) -> measurement`."""
	results: dict[str, list[float]] = {name: [] for name in variants}
	for i in range(rounds):
		for name, run in variants.items():
			results[name].append(run(i))
	return results


@dataclass
class Gate:
	"""One target of the issue's table: `value` compared with `target` by `op`."""

	id: str
	what: str
	value: float | None
	target: float
	op: str  # "<=" or ">="
	unit: str = "×"
	note: str = ""
	judged: bool = True  # False: reported for information, never passes or misses

	@property
	def measured(self) -> bool:
		return self.value is not None

	@property
	def passed(self) -> bool | None:
		if self.value is None or not self.judged:
			return None
		return self.value <= self.target if self.op == "<=" else self.value >= self.target

	@property
	def margin(self) -> str:
		"""How far from the target, as a factor (e.g. "15.6x short")."""
		if self.value is None or not self.judged or self.passed:
			return ""
		if self.op == ">=":
			factor = self.target / self.value if self.value else float("inf")
			return f"{factor:.1f}× short of the target"
		factor = self.value / self.target if self.target else float("inf")
		return f"{factor:.1f}× over the target"

	def as_dict(self) -> dict:
		return {**asdict(self), "passed": self.passed, "margin": self.margin}


@dataclass
class Scenario:
	"""What one scenario measured: summaries by name, its gates, and notes."""

	id: str
	title: str
	measurements: dict[str, dict] = field(default_factory=dict)
	gates: list[Gate] = field(default_factory=list)
	notes: list[str] = field(default_factory=list)

	def as_dict(self) -> dict:
		return {
			"id": self.id,
			"title": self.title,
			"measurements": self.measurements,
			"gates": [g.as_dict() for g in self.gates],
			"notes": self.notes,
		}


@dataclass(frozen=True)
class Scale:
	"""How much each scenario does. `quick` stays under 3 minutes on these machines; `tiny`
	only proves the harness works (the pytest test), its numbers mean nothing."""

	name: str
	p1_rounds: int
	p1_transactions: int  # per round and document shape
	p1b_rounds: int
	p3_events: (
		int  # several times the drainer's Batch Size: the sustained window starts after the first batch
	)
	p3_rounds: int
	p4_jobs: int
	p5_seconds: float
	p6_outage_seconds: float
	p7_events: int  # 0: not run


SCALES = {
	"tiny": Scale("tiny", 1, 3, 2, 300, 1, 2, 2, 2, 0),
	"quick": Scale("quick", 5, 40, 15, 30_000, 3, 12, 10, 10, 0),
	"full": Scale("full", 11, 200, 60, 50_000, 5, 40, 60, 60, 1_000_000),
}
