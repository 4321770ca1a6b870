"""The live view: what the consumer kit read back from Kafka, as a block of text."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from erpnext_streaming.consumer.alerts import Alert, ThresholdAlerts
from erpnext_streaming.consumer.decoding import Event
from erpnext_streaming.consumer.kpis import (
	CashExposure,
	JobCardTimes,
	PaymentLedger,
	RevenueVelocity,
	StockPosition,
	WorkOrderBoard,
)

BANNER = "SYNTHETIC DATA: made up by sandbox/workload.py, not from any ERPNext site"
REORDER_LEVEL = 25.0


@dataclass
class LiveState:
	"""KPIs over everything consumed so far, plus rates and the alerts fired."""

	revenue: RevenueVelocity = field(default_factory=lambda: RevenueVelocity(window=timedelta(minutes=1)))
	stock: StockPosition = field(default_factory=StockPosition)
	cash: CashExposure = field(default_factory=CashExposure)
	payments: PaymentLedger = field(default_factory=PaymentLedger)
	jobs: JobCardTimes = field(default_factory=JobCardTimes)
	orders: WorkOrderBoard = field(default_factory=WorkOrderBoard)
	reorder: ThresholdAlerts = field(default_factory=lambda: ThresholdAlerts(lambda key: REORDER_LEVEL))
	consumed: int = 0
	late: int = 0
	by_doctype: dict[str, int] = field(default_factory=dict)
	recent: deque = field(default_factory=lambda: deque(maxlen=200))  # (monotonic time, count)
	alerts: deque = field(default_factory=lambda: deque(maxlen=5))

	def apply(self, events: list[Event]) -> None:
		for event in events:
			self.consumed += 1
			self.late += event.late
			self.by_doctype[event.doctype] = self.by_doctype.get(event.doctype, 0) + 1
			for kpi in (self.revenue, self.cash, self.payments, self.jobs, self.orders):
				kpi.apply(event)
			key = self.stock.apply(event)
			if key:
				alert = self.reorder.observe(key, self.stock.on_hand(key), event.event_time)
				if alert:
					self.alerts.append(alert)
		self.recent.append((time.monotonic(), self.consumed))

	def events_per_second(self, span: float = 10.0) -> float:
		now = time.monotonic()
		window = [(t, n) for t, n in self.recent if now - t <= span]
		if len(window) < 2 or window[-1][0] == window[0][0]:
			return 0.0
		return (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])


def _money(value: Decimal | float) -> str:
	return f"{float(value):>13,.2f}"


def render(state: LiveState, header: list[str], footer: list[str], companies: tuple[str, ...]) -> str:
	lines = [f"*** {BANNER} ***", *header, ""]
	lines.append(
		f"consumed back from Kafka: {state.consumed} events ({state.events_per_second():.1f} events/s), "
		+ ", ".join(f"{d} {n}" for d, n in sorted(state.by_doctype.items()))
	)
	lines += ["", f"{'company':<18}{'invoices':>9}{'revenue, net':>14}{'per min (1m)':>14}{'receivable':>14}"
		f"{'cash+bank':>14}{'open WOs':>9}"]  # fmt: skip
	for company in companies:
		count, value = state.revenue.totals(company)
		newest = max((m for m in state.revenue.per_minute(company)), default=None)
		per_minute = state.revenue.velocity(company, newest)[1] if newest else Decimal(0)
		exposure = state.cash.exposure(company)
		lines.append(
			f"{company:<18}{count:>9}{_money(value)}{_money(per_minute)}{_money(state.payments.receivable(company))}"
			f"{_money(exposure['cash'])}{len(state.orders.open_orders(company)):>9}"
		)
	positions = state.stock.positions()
	lines += [
		"",
		f"stock movement (net of cancellations), lowest on hand first; reorder level {REORDER_LEVEL:g}",
	]
	lines.append(
		f"  {'company':<18}{'item':<14}{'warehouse':<18}{'on hand':>9}{'in':>8}{'out':>8}{'value':>14}"
	)
	for (company, item, warehouse), p in sorted(positions.items(), key=lambda kv: kv[1]["qty"])[:8]:
		lines.append(
			f"  {company:<18}{item:<14}{warehouse:<18}{p['qty']:>9g}{p['in']:>8g}{p['out']:>8g}{_money(p['value'])}"
		)
	operations = state.jobs.per_operation()
	if operations:
		done = sum(v["job_cards"] for v in operations.values())
		cycle = sum(v["cycle"] for v in operations.values()) / done
		idle = sum(v["idle"] for v in operations.values()) / done
		lines += [
			"",
			f"job cards completed: {done}, mean cycle {_minutes(cycle)}, mean idle {_minutes(idle)}",
		]
	lines += ["", "alerts (stock below the reorder level, once per crossing):"]
	lines += [f"  {_alert(a)}" for a in state.alerts] or ["  none"]
	return "\n".join([*lines, "", *footer])


def _minutes(value: float) -> str:
	return f"{value:.1f} min" if value >= 1 else f"{value * 60:.1f} s"


def _alert(alert: Alert) -> str:
	company, item, warehouse = alert.key
	return f"{company}: {item} in {warehouse} fell to {alert.value:g} (< {alert.threshold:g}), crossing {alert.crossing}"
