"""`python -m benchmarks [--quick | --full] [--only P1,P3] [--out DIR]`.

Starts the services (env.py), runs the scenarios, writes `<out>/<mode>.json` and
`<out>/<mode>.md` (medians, spread, every ratio, where the time goes) and prints the gate
table. Exit status: 0 when every gate that could be measured passed, 1 when a ratio target
is missed, 2 on a harness error. `--full` adds the 1,000,000-event soak (P7) and takes
much longer; `--tiny` only proves the harness runs (used by tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

from benchmarks import env
from benchmarks.stats import SCALES, Gate, Scale, Scenario

ALL = ("P1", "P1b", "P3", "P4", "P5", "P6", "P7")
RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
	parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
	mode = parser.add_mutually_exclusive_group()
	mode.add_argument("--quick", dest="scale", action="store_const", const="quick", help="under 3 minutes")
	mode.add_argument("--full", dest="scale", action="store_const", const="full", help="the default")
	mode.add_argument("--tiny", dest="scale", action="store_const", const="tiny", help="harness check only")
	parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ALL)}")
	parser.add_argument("--out", type=Path, default=RESULTS, help="directory of the result files")
	parser.add_argument(
		"--brokers",
		type=int,
		choices=(1, 3),
		default=1,
		help="Apache Kafka nodes to start (3: replication factor 3, min.insync.replicas 2)",
	)
	args = parser.parse_args(argv)
	args.scale = args.scale or "full"
	if args.only and not args.only.strip(", "):
		parser.error(f"--only names no scenario; choose from {', '.join(ALL)}")
	args.only = [s.strip() for s in args.only.split(",") if s.strip()] or list(ALL)
	unknown = set(args.only) - set(ALL)
	if unknown:
		parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
	return args


def run_scenarios(services: env.Services, scale: Scale, only: list[str]) -> list[Scenario]:
	from benchmarks import capture, delivery

	wanted = set(only)
	scenarios: list[Scenario] = []
	if wanted & {"P1", "P1b"}:
		with services.database() as db_params:
			if "P1" in wanted:
				scenarios.append(capture.p1(db_params, services.redis_url, services.run_id, scale))
			if "P1b" in wanted:
				scenarios.append(capture.p1b(db_params, services.redis_url, services.run_id, scale))
	raw = None
	if wanted & {"P3", "P4", "P6"}:
		p3, p4, raw = delivery.p3_p4(services, scale)
		scenarios += [s for s in (p3, p4) if s.id in wanted]
	if "P5" in wanted:
		scenarios.append(delivery.p5(services, scale))
	if "P6" in wanted:
		scenarios.append(delivery.p6(services, scale, raw))
	if "P7" in wanted:
		if scale.p7_events:
			scenarios.append(delivery.p7(services, scale))
		else:
			soak = Scenario("P7", "worker RSS growth over a 1,000,000-event soak")
			soak.notes.append(f"not run in {scale.name} mode (full mode only)")
			soak.gates.append(
				Gate("P7", "RSS growth of the drainer's work horse", None, 0.10, "<=", unit="share")
			)
			scenarios.append(soak)
	return scenarios


def _value(gate: Gate) -> str:
	if gate.value is None:
		return "not measured"
	if gate.unit == "share":
		return f"{gate.value:.2%}"
	if gate.unit == "×":
		return f"{gate.value:.3g}×"
	return f"{gate.value:.4g} {gate.unit}"


def _target(gate: Gate) -> str:
	target = (
		f"{gate.target:.0%}"
		if gate.unit == "share"
		else f"{gate.target:g}{'×' if gate.unit == '×' else ' ' + gate.unit}"
	)
	return f"{gate.op} {target}"


def _verdict(gate: Gate) -> str:
	if not gate.judged:
		return "information" if gate.measured else "not measured"
	return {True: "pass", False: "**MISSED**", None: "not measured"}[gate.passed]


def gate_table(scenarios: list[Scenario]) -> str:
	lines = ["| id | what | measured | target | result | by how much |", "|---|---|---|---|---|---|"]
	for scenario in scenarios:
		for gate in scenario.gates:
			note = f" ({gate.note})" if gate.note else ""
			lines.append(
				f"| {gate.id} | {gate.what} | {_value(gate)}{note} | {_target(gate)} | {_verdict(gate)} | {gate.margin} |"
			)
	return "\n".join(lines)


def _fmt(value) -> str:
	if isinstance(value, float):
		return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
	return str(value)


def markdown(result: dict, scenarios: list[Scenario]) -> str:
	out = [
		f"# Benchmark results ({result['mode']} mode)",
		"",
		f"Run {result['environment']['date']} with `{result['command']}` in {result['seconds']:.0f} s.",
		"",
		f"Environment: {env.line(result['environment'])}.",
		"",
		"Every ratio is of two things measured side by side in this run, interleaved (A B A B ...);",
		"a value is the median over the rounds, spread = (max - min) / median.",
		"",
		"## Gates",
		"",
		gate_table(scenarios),
		"",
	]
	for scenario in scenarios:
		out += [f"## {scenario.id}: {scenario.title}", ""]
		for name, value in scenario.measurements.items():
			if isinstance(value, dict) and "median" in value:
				out.append(
					f"- {name}: median {_fmt(value['median'])} (min {_fmt(value['min'])}, max {_fmt(value['max'])}, "
					f"spread {value['spread']:.0%}, n = {value['n']})"
				)
			elif isinstance(value, dict):
				out.append(f"- {name}:")
				for key, inner in value.items():
					if isinstance(inner, dict) and "median" in inner:
						inner = (
							f"median {_fmt(inner['median'])} (spread {inner['spread']:.0%}, n = {inner['n']})"
						)
					elif isinstance(inner, dict):
						inner = ", ".join(f"{k} {_fmt(v)}" for k, v in inner.items())
					out.append(f"  - {key}: {_fmt(inner)}")
			else:
				out.append(f"- {name}: {_fmt(value)}")
		out += [f"- note: {n}" for n in scenario.notes]
		out.append("")
	return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
	args = parse(argv)
	scale = SCALES[args.scale]
	command = "python -m benchmarks " + " ".join(sys.argv[1:] if argv is None else argv)
	started = time.monotonic()
	name = scale.name if args.brokers == 1 else f"{scale.name}-{args.brokers}-brokers"
	try:
		with env.stopping_on_signals(), env.started(args.brokers) as services:
			environment = env.describe(services)
			print(f"benchmarks ({scale.name}): {env.line(environment)}", flush=True)
			scenarios = run_scenarios(services, scale, args.only)
	except env.Stopped as stopped:
		print(f"benchmarks: stopped by {stopped}; everything started was removed", file=sys.stderr)
		return 130
	except Exception:
		traceback.print_exc()
		print("benchmarks: the harness failed (see above); no result written", file=sys.stderr)
		return 2
	gates = [g for s in scenarios for g in s.gates]
	if scale.name == "tiny":  # a harness check: its numbers mean nothing, so nothing is judged
		for gate in gates:
			gate.judged = False
	result = {
		"mode": name,
		"command": command.strip(),
		"seconds": time.monotonic() - started,
		"environment": environment,
		"scenarios": [s.as_dict() for s in scenarios],
		"passed": all(g.passed is not False for g in gates),
		"missed": [f"{g.id}: {g.what}" for g in gates if g.passed is False],
	}
	args.out.mkdir(parents=True, exist_ok=True)
	(args.out / f"{name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
	(args.out / f"{name}.md").write_text(markdown(result, scenarios) + "\n")
	print(gate_table(scenarios))
	print(f"results: {args.out / name}.json and .md ({result['seconds']:.0f} s)")
	if not result["passed"]:
		print(
			f"benchmarks: {len(result['missed'])} target(s) missed: {'; '.join(result['missed'])}",
			file=sys.stderr,
		)
		return 1
	return 0
