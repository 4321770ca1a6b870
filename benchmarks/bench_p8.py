"""P8 on a real bench: submit time of a large Journal Entry with streaming on ÷ off.

ERPNext submits a Journal Entry of more than 100 rows in a background job; its GL Entry
rows are what the app captures, so this is the worst case of capture and outbox cost per
transaction. Run from the bench's `sites` folder as the bench user (not part of
`scripts/benchmarks`: it needs ERPNext):

    ../env/bin/python /path/to/erpnext_streaming/benchmarks/bench_p8.py SITE [rounds] [rows] [company]

Each round submits one entry with streaming on and one with it off, interleaved (the ledger
grows during the run). Each measured submit runs in a process of its own, after a 200-row
warm-up entry in the same setting, as ERPNext's background job runs each entry in a forked
work horse; before it the drainer is let deliver and settle the previous entry's events,
so it does not compete for the CPUs or the database. The time measured is `_submit()` plus
the commit (the outbox is written in before_commit). The entries stay submitted; the
medians and their ratio are printed for benchmarks/RESULTS.md.
"""

import os
import statistics
import subprocess
import sys
import time

import frappe

SITE = sys.argv[1]
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 2
ROWS = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
COMPANY = sys.argv[4] if len(sys.argv) > 4 else None
TARGET = 1.05


def set_streaming(on: bool) -> None:
	from erpnext_streaming import catalog

	frappe.db.set_single_value("Streaming Settings", "enabled", int(on))
	frappe.clear_document_cache("Streaming Settings", "Streaming Settings")
	catalog.clear_cache()
	frappe.db.commit()  # the switch is seen by the next submit's catalog and by the drainer


def settled() -> bool:
	"""Delivered and settled: no bundle and no receipt left (the drainer settles a receipt into
	the Event Log, 10,000 row updates after an entry, and then deletes the passed bundles)."""
	from erpnext_streaming.constants import BUNDLE_TABLE, RECEIPT_TABLE

	return not any(
		frappe.db.sql(f"SELECT 1 FROM `{table}` LIMIT 1") for table in (BUNDLE_TABLE, RECEIPT_TABLE)
	)


def wait_drained(timeout: float = 300) -> None:
	"""Let the drainer deliver and settle the previous entry's events, so that neither its
	sends nor its Event Log updates compete with the measured submit."""
	from erpnext_streaming.delivery import bundles, jobs

	frappe.db.commit()  # a fresh snapshot before looking for undelivered bundles
	if bundles.oldest_undelivered(frappe.db) is not None:
		jobs.ensure_drainer(stale_after=jobs.STARTING_SECONDS)
	deadline = time.monotonic() + timeout
	while time.monotonic() < deadline:
		frappe.db.commit()  # a fresh snapshot
		if settled():
			return
		time.sleep(2)
	print(f"warning: events still unsettled after {timeout:.0f} s; measuring anyway", flush=True)


def journal_entry(company: str, rows: int):
	doc = frappe.get_doc("Company", company)
	expense = frappe.db.get_value("Account", {"company": company, "root_type": "Expense", "is_group": 0})
	accounts = []
	for i in range(rows):
		row = {"account": (expense, doc.default_cash_account)[i % 2], "cost_center": doc.cost_center}
		row["debit_in_account_currency" if i % 2 == 0 else "credit_in_account_currency"] = 1.25
		accounts.append(row)
	entry = frappe.get_doc(
		{
			"doctype": "Journal Entry",
			"company": company,
			"posting_date": frappe.utils.today(),
			"accounts": accounts,
		}
	)
	entry.user_remark = f"benchmarks/bench_p8.py, {rows} rows"
	return entry.insert()


def submit_seconds(on: bool, company: str, rows: int) -> float:
	wait_drained()
	set_streaming(on)
	entry = journal_entry(company, rows)
	frappe.db.commit()  # the draft's insert is not part of the measured submit
	started = time.perf_counter()
	entry._submit()  # in the request, as the background job ERPNext queues would
	frappe.db.commit()  # the before_commit flush (the outbox write) belongs in the time
	seconds = time.perf_counter() - started
	print(f"streaming {'on ' if on else 'off'} {entry.name}: {seconds:.2f} s", flush=True)
	return seconds


def one_submit(on: bool) -> None:
	"""In a process of its own: a warm-up entry, then the measured one; prints its seconds last."""
	frappe.init(site=SITE, sites_path=".")
	frappe.connect()
	frappe.set_user("Administrator")
	try:
		company = COMPANY or frappe.defaults.get_global_default("company")
		submit_seconds(on, company, 200)  # warm-up
		print(submit_seconds(on, company, ROWS), flush=True)
	finally:
		frappe.destroy()


def measured(on: bool) -> float:
	env = dict(os.environ, P8_ONE="on" if on else "off")
	done = subprocess.run([sys.executable, *sys.argv], env=env, capture_output=True, text=True, check=True)
	print(done.stdout.strip().splitlines()[-2], flush=True)
	return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
	frappe.init(site=SITE, sites_path=".")
	frappe.connect()
	try:
		was = bool(frappe.db.get_single_value("Streaming Settings", "enabled"))
	finally:
		frappe.destroy()
	times = {True: [], False: []}
	for round_ in range(ROUNDS):
		for on in (True, False) if round_ % 2 == 0 else (False, True):
			times[on].append(measured(on))
	frappe.init(site=SITE, sites_path=".")
	frappe.connect()
	try:
		wait_drained()
		set_streaming(was)
	finally:
		frappe.destroy()
	on, off = statistics.median(times[True]), statistics.median(times[False])
	verdict = "pass" if on / off <= TARGET else "MISSED"
	print(f"P8 {ROWS:,}-row Journal Entry: on {on:.2f} s, off {off:.2f} s (medians of {ROUNDS})")
	print(f"P8 ratio on/off {on / off:.3f} (target <= {TARGET}): {verdict}")


if __name__ == "__main__":
	if os.environ.get("P8_ONE"):
		one_submit(os.environ["P8_ONE"] == "on")
	else:
		main()
