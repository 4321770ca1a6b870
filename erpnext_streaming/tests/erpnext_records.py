"""The ERPNext records the bench tests use, under names of our own.

ERPNext's `_Test ...` records (make_test_records) need a chain of other apps' and
doctypes' fixtures (Payment Gateway, product bundles, USD accounts, BOMs ...) that a
site made by the setup wizard does not have, and a run that did create some leaves them
committed. So the tests that submit real invoices and stock entries use these instead:

- company COMPANY ("_ES Test Company", abbr "_ESTC", INR, India, Standard chart, with
  perpetual inventory: every stock movement posts its GL entries, which the revaluation
  test needs); ERPNext's Company.on_update makes its chart of accounts, cost center,
  default warehouses and default accounts;
- a Fiscal Year covering today and yesterday (the revaluation test back-dates a receipt)
  for that company, only when no fiscal year of the site covers the day: one linked to
  COMPANY alone, in the gap the site's fiscal years leave;
- warehouse WAREHOUSE ("_ES Test Warehouse - _ESTC") under the company's group warehouse;
- customer CUSTOMER ("_ES Test Customer");
- stock item ITEM ("_ES Test Item", UOM Nos) with COMPANY / WAREHOUSE as its defaults.

Each is created with ERPNext's own documents and controllers (frappe.get_doc(...).insert()
and erpnext's test_item.make_item), only when missing, and committed once, so a test's
rollback never takes them away. `ensure()` is what a test class calls in setUpClass;
`sales_invoice`, `stock_entry` and `stock_item` are ERPNext's test helpers with these
records as their defaults.
"""

from datetime import date, timedelta
from types import SimpleNamespace

import frappe
from frappe.utils import add_days, getdate, today

COMPANY = "_ES Test Company"
ABBR = "_ESTC"
CURRENCY = "INR"
COUNTRY = "India"
CUSTOMER = "_ES Test Customer"
ITEM = "_ES Test Item"
WAREHOUSE_NAME = "_ES Test Warehouse"
WAREHOUSE = f"{WAREHOUSE_NAME} - {ABBR}"
FISCAL_YEAR_PREFIX = "_ES Test Fiscal Year"


def ensure() -> SimpleNamespace:
	"""Create whatever of the records is missing (committing them), and return their
	names and the company's accounts: company, warehouse, customer, item, cost_center,
	debit_to, income_account, expense_account."""
	created = [
		_ensure_company(),
		*(_ensure_fiscal_year(day) for day in (getdate(today()), getdate(add_days(today(), -1)))),
		_ensure_warehouse(),
		_ensure_customer(),
		_ensure_item(),
	]
	if any(created):
		frappe.db.commit()  # records of the suite: a test's rollback must not take them
	return records()


def records() -> SimpleNamespace:
	company = frappe.db.get_value(
		"Company",
		COMPANY,
		["cost_center", "default_receivable_account", "default_income_account", "default_expense_account"],
		as_dict=True,
	)
	accounts = {
		"cost_center": company.cost_center,
		"debit_to": company.default_receivable_account,
		"income_account": company.default_income_account,
		"expense_account": company.default_expense_account,  # Cost of Goods Sold
	}
	missing = [field for field, value in accounts.items() if not value]
	if missing:
		raise AssertionError(f"ERPNext did not set up {', '.join(missing)} of company {COMPANY}")
	return SimpleNamespace(company=COMPANY, warehouse=WAREHOUSE, customer=_customer(), item=ITEM, **accounts)


def sales_invoice(**args):
	"""ERPNext's create_sales_invoice, for COMPANY, CUSTOMER and ITEM from WAREHOUSE."""
	from erpnext.accounts.doctype.sales_invoice.test_sales_invoice import create_sales_invoice

	r = records()
	defaults = {
		"company": r.company,
		"customer": r.customer,
		"debit_to": r.debit_to,
		"currency": CURRENCY,
		"item_code": r.item,
		"item_name": r.item,
		"description": r.item,
		"warehouse": r.warehouse,
		"income_account": r.income_account,
		"expense_account": r.expense_account,
		"cost_center": r.cost_center,
	}
	return create_sales_invoice(**{**defaults, **args})


def stock_entry(**args):
	"""ERPNext's make_stock_entry, for COMPANY and ITEM (into or out of WAREHOUSE)."""
	from erpnext.stock.doctype.stock_entry.stock_entry_utils import make_stock_entry

	args.setdefault("company", COMPANY)
	args.setdefault("item_code", ITEM)
	return make_stock_entry(**args)


def stock_item(item_code: str):
	"""A stock item (ERPNext's make_item) whose defaults are COMPANY and WAREHOUSE."""
	from erpnext.stock.doctype.item.test_item import make_item

	return make_item(
		item_code,
		{
			"is_stock_item": 1,
			"stock_uom": "Nos",
			"item_group": _root("Item Group"),
			"item_defaults": [{"company": COMPANY, "default_warehouse": WAREHOUSE}],
		},
	)


# -- the records ------------------------------------------------------------------------


def _ensure_company() -> bool:
	if frappe.db.exists("Company", COMPANY):
		return False
	frappe.get_doc(
		{
			"doctype": "Company",
			"company_name": COMPANY,
			"abbr": ABBR,
			"default_currency": CURRENCY,
			"country": COUNTRY,
			"chart_of_accounts": "Standard",
			"enable_perpetual_inventory": 1,
		}
	).insert(ignore_permissions=True)
	return True


def _ensure_fiscal_year(day: date) -> bool:
	"""A fiscal year of the site covers `day` for COMPANY, or one is made for COMPANY in the
	gap around `day` that the fiscal years it could overlap leave (those of all companies
	and those of COMPANY; Fiscal Year.validate_overlap refuses any other)."""
	from erpnext.accounts.utils import FiscalYearError, get_fiscal_year

	try:
		get_fiscal_year(day, company=COMPANY, verbose=0)
		return False
	except FiscalYearError:
		pass
	start, end = date(day.year, 1, 1), date(day.year, 12, 31)
	for fy in frappe.get_all("Fiscal Year", fields=["name", "year_start_date", "year_end_date"]):
		companies = frappe.get_all("Fiscal Year Company", filters={"parent": fy.name}, pluck="company")
		if companies and COMPANY not in companies:
			continue  # another company's year: no overlap
		first, last = getdate(fy.year_start_date), getdate(fy.year_end_date)
		if last < day:
			start = max(start, last + timedelta(days=1))
		elif first > day:
			end = min(end, first - timedelta(days=1))
		else:  # it covers `day`, yet get_fiscal_year did not find it: it is disabled
			raise AssertionError(f"Fiscal Year {fy.name} covers {day} but is disabled")
	doc = frappe.get_doc(
		{
			"doctype": "Fiscal Year",
			"year": f"{FISCAL_YEAR_PREFIX} {start.isoformat()}",
			"year_start_date": start,
			"year_end_date": end,
			"is_short_year": int((start.month, start.day, end.month, end.day) != (1, 1, 12, 31)),
			"companies": [{"company": COMPANY}],
		}
	)
	doc.insert(ignore_permissions=True)
	return True


def _ensure_warehouse() -> bool:
	if frappe.db.exists("Warehouse", WAREHOUSE):
		return False
	parent = frappe.db.get_value("Warehouse", {"company": COMPANY, "is_group": 1}, "name", order_by="lft")
	frappe.get_doc(
		{
			"doctype": "Warehouse",
			"warehouse_name": WAREHOUSE_NAME,
			"company": COMPANY,
			"parent_warehouse": parent,
		}
	).insert(ignore_permissions=True)
	return True


def _customer() -> str | None:
	"""The customer's name (it is CUSTOMER unless the site names customers by a series)."""
	return frappe.db.get_value("Customer", {"customer_name": CUSTOMER}, "name")


def _ensure_customer() -> bool:
	if _customer():
		return False
	frappe.get_doc(
		{
			"doctype": "Customer",
			"customer_name": CUSTOMER,
			"customer_type": "Company",
			"customer_group": _leaf("Customer Group"),
			"territory": _leaf("Territory"),
		}
	).insert(ignore_permissions=True)
	return True


def _ensure_item() -> bool:
	if frappe.db.exists("Item", ITEM):
		return False
	stock_item(ITEM)
	return True


def _root(doctype: str) -> str:
	from frappe.utils.nestedset import get_root_of

	return get_root_of(doctype)


def _leaf(doctype: str) -> str:
	"""A node that is not a group (the setup wizard makes some), else the tree's root."""
	return frappe.db.get_value(doctype, {"is_group": 0}, "name", order_by="lft") or _root(doctype)
