"""The transactional outbox: Streaming Event Log rows written inside the user's transaction.

No module here imports Frappe: functions take a `db` with `frappe.db.sql(query, values,
as_dict=...)`'s shape and a `now` from the caller (Frappe's `now_datetime()`, the time zone
of the `modified` column). This package imports nothing itself, so `delivery/bundles.py` can
import `records` and `outcomes` while `write` and `requeue` import `delivery/bundles.py`.
"""
