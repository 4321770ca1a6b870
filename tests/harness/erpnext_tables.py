"""Minimal ERPNext v15 tables for the capture tests (our own subset, real fieldnames).

The flush reads a few columns of the streamed doctypes (name, modified, SLE valuation),
so the test database needs those tables. These definitions are written for the tests
from ERPNext v15's doctype JSONs (fieldnames and fieldtypes as ERPNext declares them);
they are not copies of them and hold only the columns the app or its tests touch.
"""

from __future__ import annotations


def _doctype(name: str, fields: list[tuple[str, ...]], **extra) -> dict:
	"""A doctype definition; a field is (fieldname, fieldtype) or (fieldname, fieldtype, options)."""
	return {
		"name": name,
		"fields": [
			{"fieldname": f[0], "fieldtype": f[1], **({"options": f[2]} if len(f) > 2 else {})}
			for f in fields
		],
		"engine": "InnoDB",
		**extra,
	}


SALES_INVOICE = _doctype(
	"Sales Invoice",
	[
		("customer", "Link"),
		("company", "Link"),
		("posting_date", "Date"),
		("posting_time", "Time"),
		("currency", "Link"),
		("grand_total", "Currency"),
		("outstanding_amount", "Currency"),
		("status", "Select"),
		("is_return", "Check"),
		("items", "Table", "Sales Invoice Item"),
	],
	is_submittable=1,
)
SALES_INVOICE_ITEM = _doctype(
	"Sales Invoice Item",
	[
		("item_code", "Link"),
		("item_name", "Data"),
		("qty", "Float"),
		("rate", "Currency"),
		("amount", "Currency"),
		("warehouse", "Link"),
	],
	istable=1,
)
GL_ENTRY = _doctype(
	"GL Entry",
	[
		("posting_date", "Date"),
		("account", "Link"),
		("debit", "Currency"),
		("credit", "Currency"),
		("voucher_type", "Link"),
		("voucher_no", "Dynamic Link"),
		("company", "Link"),
		("is_cancelled", "Check"),
	],
)
STOCK_LEDGER_ENTRY = _doctype(
	"Stock Ledger Entry",
	[
		("item_code", "Link"),
		("warehouse", "Link"),
		("posting_date", "Date"),
		("posting_time", "Time"),
		("posting_datetime", "Datetime"),
		("voucher_type", "Link"),
		("voucher_no", "Dynamic Link"),
		("voucher_detail_no", "Data"),
		("actual_qty", "Float"),
		("incoming_rate", "Currency"),
		("outgoing_rate", "Currency"),
		("qty_after_transaction", "Float"),
		("valuation_rate", "Currency"),
		("stock_value", "Currency"),
		("stock_value_difference", "Currency"),
		("stock_queue", "Long Text"),
		("company", "Link"),
		("is_cancelled", "Check"),
	],
)
PAYMENT_ENTRY = _doctype(
	"Payment Entry",
	[("payment_type", "Select"), ("party", "Dynamic Link"), ("paid_amount", "Currency"), ("status", "Select"),
	 ("company", "Link")],
	is_submittable=1,
)  # fmt: skip
PAYMENT_LEDGER_ENTRY = _doctype(
	"Payment Ledger Entry",
	[
		("posting_date", "Date"),
		("account", "Link"),
		("voucher_type", "Link"),
		("voucher_no", "Dynamic Link"),
		("against_voucher_type", "Link"),
		("against_voucher_no", "Dynamic Link"),
		("amount", "Currency"),
		("delinked", "Check"),
		("company", "Link"),
	],
)
WORK_ORDER = _doctype(
	"Work Order",
	[
		("status", "Select"),
		("production_item", "Link"),
		("company", "Link"),
		("qty", "Float"),
		("produced_qty", "Float"),
		("material_transferred_for_manufacturing", "Float"),
		("process_loss_qty", "Float"),
	],
	is_submittable=1,
)
JOB_CARD = _doctype(
	"Job Card",
	[
		("work_order", "Link"),
		("operation", "Link"),
		("company", "Link"),
		("status", "Select"),
		("for_quantity", "Float"),
		("total_completed_qty", "Float"),
	],
	is_submittable=1,
)

# ERPNext's on_doctype_update indexes the app's queries rely on (stock_ledger_entry.py, v15)
ERPNEXT_INDEXES: dict[str, dict[str, tuple[str, ...]]] = {
	"Stock Ledger Entry": {
		"item_code_warehouse_posting_datetime_creation_index": (
			"item_code",
			"warehouse",
			"posting_datetime",
			"creation",
		),
	},
}

ERPNEXT_TABLES = (
	SALES_INVOICE, SALES_INVOICE_ITEM, GL_ENTRY, STOCK_LEDGER_ENTRY, PAYMENT_ENTRY, PAYMENT_LEDGER_ENTRY,
	WORK_ORDER, JOB_CARD,
)  # fmt: skip
