"""The bench commands on a real bench (twin of tests/test_commands.py): Frappe finds the
`streaming` group, and each command runs against this site. `connect` (frappe.init and
frappe.connect) is replaced by the test's own connection, and per-chunk commits become
savepoints, so nothing outlives the test."""

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest.mock import patch

import fastavro
import frappe
from click.testing import CliRunner
from frappe.tests.utils import FrappeTestCase

from erpnext_streaming import catalog, commands
from erpnext_streaming.constants import EVENT_LOG_DOCTYPE, SETTINGS_DOCTYPE
from erpnext_streaming.emitters import handler
from erpnext_streaming.schemas import default_registry
from erpnext_streaming.tests import erpnext_records
from erpnext_streaming.tests.utils import commits_as_savepoints, enable_streaming


@contextmanager
def this_site(ctx):
	yield frappe.local.site


class TestStreamingCommands(FrappeTestCase):
	def setUp(self):
		enable_streaming(bootstrap_servers="127.0.0.1:1")

	def tearDown(self):
		handler.clear()
		frappe.db.rollback()
		catalog.clear_cache()

	def run_command(self, *args):
		with patch.object(commands, "connect", this_site), commits_as_savepoints():
			return CliRunner().invoke(
				commands.streaming, list(args), obj={"sites": [frappe.local.site]}, catch_exceptions=False
			)

	def test_bench_finds_the_streaming_group(self):
		from frappe.utils.bench_helper import get_app_commands

		group = get_app_commands("erpnext_streaming")["streaming"]
		self.assertEqual(
			set(group.commands),
			{
				"status",
				"check-connection",
				"create-topics",
				"requeue",
				"replay",
				"backfill",
				"export-schemas",
				"reconcile",
			},
		)

	def test_status_json_and_check_connection_against_an_unreachable_broker(self):
		result = self.run_command("status", "--json")
		self.assertEqual(result.exit_code, 1, result.output)
		payload = json.loads(result.output)
		self.assertEqual(payload["status"], "down")
		self.assertFalse(payload["broker"]["reachable"])
		result = self.run_command("check-connection", "--timeout", "1")
		self.assertEqual(result.exit_code, 1)
		self.assertIn("Kafka is not reachable: ", result.output)
		result = self.run_command("create-topics", "--dry-run", "--timeout", "1")
		self.assertEqual(result.exit_code, 1)
		self.assertIn("Kafka is not reachable: ", result.output)

	def test_backfill_of_real_invoices_and_a_refusal(self):
		erpnext_records.ensure()  # our company, fiscal year, warehouse, customer and item
		invoice = erpnext_records.sales_invoice(qty=2, rate=50)
		handler.clear()
		result = self.run_command(
			"backfill",
			"--doctype",
			"Sales Invoice",
			"--company",
			erpnext_records.COMPANY,
			"--from-date",
			str(invoice.posting_date),
		)
		self.assertEqual(result.exit_code, 0, result.output)
		self.assertIn("completed: ", result.output)
		self.assertIn("100%", result.output)
		self.assertTrue(
			frappe.db.exists(EVENT_LOG_DOCTYPE, {"reference_name": invoice.name, "event_type": "submitted"})
		)
		result = self.run_command("backfill", "--doctype", "ToDo")
		self.assertEqual(result.exit_code, 2)

	def test_requeue_dry_run_and_export_schemas(self):
		result = self.run_command("requeue", "--dry-run", "--status", "Dead")
		self.assertEqual(result.exit_code, 0, result.output)
		self.assertTrue(result.output.endswith("event(s) would be requeued\n"))
		with tempfile.TemporaryDirectory() as folder:
			result = self.run_command("export-schemas", folder)
			self.assertEqual(result.exit_code, 0, result.output)
			files = sorted(Path(folder).glob("*.avsc"))
			self.assertEqual(len(files), len(default_registry().all()))
			for path in files:
				fastavro.parse_schema(json.loads(path.read_text()))
			manifest = json.loads((Path(folder) / "manifest.json").read_text())
			self.assertEqual(len(manifest["schemas"]), len(files))
