"""The base of the bench tests that stream ERPNext documents (kept apart from utils.py, which
the pytest suite imports too: `frappe.tests` exists only on a bench)."""

import frappe
from frappe.tests.utils import FrappeTestCase

from erpnext_streaming.tests.utils import enable_streaming


class StreamingTestCase(FrappeTestCase):
	"""A bench test on this site's ERPNext records (`erpnext_records.ensure`) with streaming
	on; every test rolls back and leaves no buffered event nor cached catalog behind."""

	@classmethod
	def setUpClass(cls):
		from erpnext_streaming.tests import erpnext_records

		super().setUpClass()
		cls.records = erpnext_records.ensure()

	def setUp(self):
		enable_streaming()

	def tearDown(self):
		from erpnext_streaming import catalog
		from erpnext_streaming.emitters import handler

		handler.clear()
		frappe.db.rollback()
		catalog.clear_cache()
