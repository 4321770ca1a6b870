"""bench commands: `bench --site SITE streaming <command>` (Frappe collects `commands`).

A thin Click layer over `erpnext_streaming.operations.site`: parse options, connect to the
site, print the result, exit with a code (0 done, 1 failed, 2 refused, 130 interrupted;
docs/operations.md).
"""

from __future__ import annotations

import json
import sys
import traceback
from contextlib import contextmanager, nullcontext

import click

from erpnext_streaming.delivery.lifecycle import handling_sigterm

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DATE = click.DateTime(formats=["%Y-%m-%d"])
DATETIME = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S"])


class Refused(Exception):
	"""A request the command refuses before changing anything (exit 2)."""


@contextmanager
def connect(ctx: click.Context):
	"""frappe.init + frappe.connect for the site bench passed (`--site` or the default site)."""
	import frappe

	sites = (ctx.obj or {}).get("sites") or []
	if not sites:
		raise click.UsageError("no site: pass --site SITE, or set a default site with `bench use SITE`")
	frappe.init(site=sites[0])
	frappe.connect()
	try:
		yield sites[0]
	finally:
		frappe.destroy()


def fail(ctx: click.Context, error: BaseException, code: int = EXIT_FAILED) -> None:
	from erpnext_streaming.operations.secrets import redact
	from erpnext_streaming.operations.site import secrets

	known = secrets()  # never raises: () when the site cannot say
	text = str(error) if isinstance(error, Refused) else f"{type(error).__name__}: {error}"
	click.secho(redact(f"Error: {text}", known), fg="red", err=True)
	if (ctx.obj or {}).get("verbose") and not isinstance(error, Refused):
		click.echo(redact(traceback.format_exc(), known), err=True)
	ctx.exit(code)


def _interrupt(signum, frame):
	"""SIGTERM (a stopped service, a killed screen) stops like Ctrl-C: at a chunk boundary."""
	raise KeyboardInterrupt


def on_site(ctx: click.Context, call, refused: tuple[type[Exception], ...] = (), interruptible: bool = False):
	"""`call(operations.site)` on the bench's site. A `refused` error exits 2, any other 1
	(`fail`); with `interruptible`, SIGTERM stops like Ctrl-C and the caller's `call` sees it."""
	try:
		with connect(ctx), handling_sigterm(_interrupt) if interruptible else nullcontext():
			from erpnext_streaming.operations import site

			return call(site)
	except (click.UsageError, KeyboardInterrupt):
		raise
	except refused as e:
		fail(ctx, Refused(str(e)), EXIT_USAGE)
	except Exception as e:
		fail(ctx, e)


@click.group("streaming")
def streaming():
	"""Operate erpnext_streaming: status, connection, topics, requeue, replay, backfill, schemas."""


@streaming.command("status")
@click.option(
	"--json", "as_json", is_flag=True, help="Print the health payload as JSON (with per-topic totals)"
)
@click.option("--no-broker", is_flag=True, help="Skip the Kafka reachability check")
@click.pass_context
def status(ctx, as_json=False, no_broker=False):
	"""Counts by status, oldest Queued/Failed age, last sent, per-topic totals, Kafka reachability.

	Exit code 0 when healthy (or streaming is disabled), 1 when degraded or down."""
	from erpnext_streaming.operations.status import Health

	if as_json:
		payload = on_site(ctx, lambda site: site.status_json(check_broker=not no_broker))
		click.echo(json.dumps(payload, indent=2, default=str))
		health = payload["status"]
	else:
		text, health = on_site(ctx, lambda site: site.status_text(check_broker=not no_broker))
		click.echo(text, nl=False)
	ctx.exit(EXIT_OK if health in (Health.OK, Health.DISABLED) else EXIT_FAILED)


@streaming.command("check-connection")
@click.option("--timeout", type=click.FloatRange(0.5, 120), default=10.0, show_default=True, help="Seconds")
@click.pass_context
def check_connection(ctx, timeout=10.0):
	"""Connect to Kafka with the saved Streaming Settings; list brokers and the topics the app
	writes: present (partitions, replication, min.insync.replicas) or missing (what to create).

	Exit code 0 when the cluster answers and every topic exists, 1 otherwise."""
	site_name, answer = _cluster_answer(ctx, lambda site: site.check_connection(timeout))
	click.echo(f"Connected to cluster {answer.get('cluster_id') or '?'}")
	click.echo(f"Brokers: {', '.join(answer.get('brokers') or [])}")
	entries = answer.get("catalog_topics") or []
	click.echo("Topics the app writes:")
	for entry in entries:
		click.echo(f"  {entry['topic']}: {_topic_state(entry)}")
		for warning in entry["warnings"]:
			click.secho(f"    warning: {warning}", fg="yellow")
	missing = [e["topic"] for e in entries if not e["exists"]]
	if missing:
		click.secho(
			f"{len(missing)} topic(s) missing: their events are held (retried, never Dead) until they "
			"exist, unless the cluster auto-creates topics (then with its own defaults, not these). "
			f"Create them: bench --site {site_name} streaming create-topics",
			fg="yellow",
		)
	ctx.exit(EXIT_FAILED if missing else EXIT_OK)


def _layout(layout: dict) -> str:
	from erpnext_streaming.topics import Recommendation

	return Recommendation(
		**{k: layout[k] for k in ("partitions", "replication_factor", "min_insync_replicas")}
	).text()


def _cluster_answer(ctx, ask) -> tuple[str, dict]:
	"""(site name, `ask(operations.site)`'s answer); exits 1 when Kafka does not answer."""
	answer = on_site(ctx, ask)
	if not answer.get("ok"):
		click.secho(f"Kafka is not reachable: {answer.get('error')}", fg="red", err=True)
		ctx.exit(EXIT_FAILED)
	return ctx.obj["sites"][0], answer


def _topic_state(entry: dict) -> str:
	if entry["exists"]:
		return "present, " + _layout(entry)
	return "MISSING, create with " + _layout(entry["recommended"])


@streaming.command("create-topics")
@click.option("--dry-run", is_flag=True, help="Ask the cluster to validate the requests, create nothing")
@click.option("--timeout", type=click.FloatRange(1, 300), default=30.0, show_default=True, help="Seconds")
@click.pass_context
def create_topics(ctx, dry_run=False, timeout=30.0):
	"""Create the missing topics the app writes (the catalog's and the dead-letter topic) with
	the recommended partitions, replication factor and min.insync.replicas; existing topics
	are left as they are.

	Exit code 0 when every topic exists (or, with --dry-run, would be created), 1 otherwise."""
	site_name, answer = _cluster_answer(
		ctx, lambda site: site.create_topics(dry_run=dry_run, timeout=timeout)
	)
	for entry in answer.get("catalog_topics") or []:
		if entry["exists"]:
			click.echo(
				f"Exists, left as is: {entry['topic']} ({_topic_state(entry).removeprefix('present, ')})"
			)
	failed = _report_created(answer["created"], dry_run)
	if not answer["created"]:
		click.echo("Nothing to create: every topic the app writes exists")
	elif answer.get("held") and not dry_run and not failed:
		click.echo(
			f"{len(answer['held'])} company(ies) held; they are retried at their next backoff, or at once "
			f"with: bench --site {site_name} streaming requeue --status Failed"
		)
	ctx.exit(EXIT_FAILED if failed else EXIT_OK)


def _report_created(created: list[dict], dry_run: bool) -> int:
	failed = 0
	for entry in created:
		if entry["error"] is None:
			click.echo(f"{'Would create' if dry_run else 'Created'} {entry['topic']}: {entry['recommended']}")
		elif entry["existed"]:
			click.echo(f"Exists, left as is: {entry['topic']} ({entry['error']})")
		else:
			failed += 1
			click.secho(f"Could not create {entry['topic']}: {entry['error']}", fg="red", err=True)
	return failed


@streaming.command("requeue")
@click.option(
	"--status",
	"statuses",
	type=click.Choice(["Failed", "Dead"]),
	multiple=True,
	help="Only rows in this status (repeatable); default both",
)
@click.option("--since", type=DATETIME, help="Only rows that failed or died at or after this time")
@click.option("--doctype", help="Only events of this document type")
@click.option("--company", help="Only events of this company")
@click.option("--dry-run", is_flag=True, help="Count, change nothing")
@click.pass_context
def requeue(ctx, statuses=(), since=None, doctype=None, company=None, dry_run=False):
	"""Queue Failed/Dead events again (attempts reset); rows being delivered are left alone."""
	result = on_site(
		ctx, lambda site: site.requeue(statuses or ("Failed", "Dead"), since, doctype, company, dry_run)
	)
	if dry_run:
		click.echo(f"{result['matched']:,} event(s) would be requeued")
	else:
		click.echo(f"Requeued {result['requeued']:,} event(s); the drainer was woken")
	ctx.exit(EXIT_OK)


@streaming.command("replay")
@click.option("--from", "start", type=DATETIME, required=True, help="Events written at or after this time")
@click.option("--to", "end", type=DATETIME, help="... and before this time (default: now)")
@click.option("--doctype", help="Only events of this document type")
@click.option("--company", help="Only events of this company")
@click.option("--topic", help="Only events of this topic")
@click.option("--chunk-size", type=click.IntRange(1, 10000), default=500, show_default=True)
@click.option("--dry-run", is_flag=True, help="Count, change nothing")
@click.pass_context
def replay(ctx, start, end=None, doctype=None, company=None, topic=None, chunk_size=500, dry_run=False):
	"""Publish Sent events again with the same event ids (copies go through the outbox)."""
	from erpnext_streaming.operations.replay import ReplayRefused

	def run(site):
		from frappe.utils import now_datetime

		end_ = end or now_datetime()
		return site.replay(start, end_, doctype, company, topic, chunk_size, dry_run, stream=sys.stderr)

	try:
		result = on_site(ctx, run, refused=(ReplayRefused,), interruptible=True)
	except KeyboardInterrupt:
		click.secho("Interrupted: the chunks committed so far are queued", fg="yellow", err=True)
		ctx.exit(EXIT_INTERRUPTED)
	if result.dry_run:
		click.echo(f"{result.matched:,} Sent event(s) would be replayed")
	else:
		click.echo(
			f"Queued {result.queued:,} event(s) again with their original event ids"
			+ (f" (Event Log {result.first}..{result.last})" if result.queued else "")
		)
	ctx.exit(EXIT_OK)


@streaming.command("backfill")
@click.option("--doctype", required=True, help="A document type the Event Catalog streams")
@click.option("--company", default="", help="Only this company's documents")
@click.option("--from-date", type=DATE, help="Posting (or transaction, or creation) date from, YYYY-MM-DD")
@click.option("--to-date", type=DATE, help="... up to and including, YYYY-MM-DD")
@click.option("--chunk-size", type=click.IntRange(1, 10000), default=500, show_default=True)
@click.option("--restart", is_flag=True, help="Start this scope over instead of resuming it")
@click.option("--quiet", is_flag=True, help="No progress bar")
@click.option("--dry-run", is_flag=True, help="Count the documents in scope, write nothing")
@click.pass_context
def backfill(
	ctx,
	doctype,
	company="",
	from_date=None,
	to_date=None,
	chunk_size=500,
	restart=False,
	quiet=False,
	dry_run=False,
):
	"""Emit events for historical submitted documents through the outbox (resumable).

	The same options resume an interrupted run from its checkpoint; event ids are those
	of live events, and ids already in the Event Log are skipped."""
	from erpnext_streaming.operations.backfill import BackfillRefused

	scope = {
		"company": company or "",
		"from_date": from_date.date() if from_date else None,
		"to_date": to_date.date() if to_date else None,
	}
	if dry_run:
		count = on_site(ctx, lambda site: site.backfill_scope_count(doctype, **scope), (BackfillRefused,))
		click.echo(f"{count:,} submitted {doctype} document(s) in scope; nothing was written")
		ctx.exit(EXIT_OK)

	def announce(job, again):
		click.echo(
			f"Resuming backfill #{job.name} of {doctype} after {job.processed:,} of {job.total:,} documents"
			if again
			else f"Backfill #{job.name} of {doctype}",
			err=True,
		)

	stream = None if quiet else sys.stderr
	result, _resumed = on_site(
		ctx,
		lambda site: site.backfill(
			doctype, **scope, chunk_size=chunk_size, restart=restart, stream=stream, announce=announce
		),
		(BackfillRefused,),
		interruptible=True,
	)
	_exit_with_backfill_result(ctx, result)


def _exit_with_backfill_result(ctx, result) -> None:
	"""Say how the run ended (how to resume, when it can) and exit with its status."""
	from erpnext_streaming.operations.jobs import Outcome

	job = result.job
	summary = (
		f"{job.processed:,} of {job.total:,} document(s), {job.emitted:,} event(s) written, "
		f"{job.skipped:,} skipped (already in the Event Log)"
	)
	if result.outcome == Outcome.COMPLETED:
		click.echo(f"Backfill #{job.name} completed: {summary}")
		ctx.exit(EXIT_OK)
	if result.outcome == Outcome.INTERRUPTED:
		click.secho(
			f"Backfill #{job.name} interrupted after {summary}; run the same command to resume",
			fg="yellow",
			err=True,
		)
		ctx.exit(EXIT_INTERRUPTED)
	click.secho(f"Backfill #{job.name} {result.outcome}: {result.error}", fg="red", err=True)
	if result.outcome == Outcome.FAILED:
		click.echo(f"After {summary}; run the same command to resume", err=True)
	ctx.exit(EXIT_FAILED)


@streaming.command("export-schemas")
@click.argument("directory", type=click.Path(file_okay=False, writable=True))
@click.pass_context
def export_schemas(ctx, directory):
	"""Write every event schema as .avsc (self-contained) plus manifest.json to DIRECTORY."""
	from erpnext_streaming.operations.schema_export import ExportRefused

	written = on_site(ctx, lambda site: site.export_schemas(directory), (ExportRefused,))
	click.echo(f"Wrote {len(written) - 1} schema file(s) and manifest.json to {directory}")
	ctx.exit(EXIT_OK)


commands = [streaming]


@streaming.command("reconcile")
@click.option("--company", help="Only this company")
@click.option("--from-date", type=DATE, help="GL and vouchers posted from this date, YYYY-MM-DD")
@click.option("--to-date", type=DATE, help="... up to and including; balances as of this date")
@click.option("--quiet", is_flag=True, help="No progress bar")
@click.pass_context
def reconcile(ctx, company=None, from_date=None, to_date=None, quiet=False):
	"""Prove the stream: ledger figures computed from the topics vs ERPNext's own (vouchers with
	and without events, GL per account, stock per item and warehouse, outstanding per invoice).

	Exit code 0 when they agree, 1 when anything differs or cannot be read."""
	from erpnext_streaming.operations import reconcile as core

	scope = core.Scope(company, from_date and from_date.date(), to_date and to_date.date())
	try:
		report = on_site(
			ctx, lambda site: core.on_site(scope, stream=None if quiet else sys.stderr), interruptible=True
		)
	except KeyboardInterrupt:
		ctx.exit(EXIT_INTERRUPTED)
	click.echo(f"Read {report.messages:,} message(s)")
	for line in report.lines():
		click.secho(line, fg="red" if line.startswith(("Problem", "  ")) else None)
	click.secho(
		"The stream equals the ledger" if report.ok else "The stream differs",
		fg="green" if report.ok else "red",
	)
	ctx.exit(EXIT_OK if report.ok else EXIT_FAILED)
