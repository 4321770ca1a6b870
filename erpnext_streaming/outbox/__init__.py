"""The transactional outbox: Streaming Event Log rows written inside the user's transaction.

- `write`: the write path (a transaction's events, their company counters and delivery
  bundles, just before COMMIT);
- `records`: what the outbox stores and reports (an event to write, a delivered or
  undelivered row, the Event Log's columns);
- `outcomes`: the delivery outcomes recorded on Event Log rows (Sent, Failed, Dead,
  dead-letter copies, leases) and retention;
- `requeue`: Failed and Dead rows back into the delivery queue;
- `mariadb`: the database helpers they share (named locks, isolation level, error numbers).

No module here imports Frappe: functions take a `db` with Frappe's
`frappe.db.sql(query, values, as_dict=...)` shape (Frappe's own `frappe.db` in production,
PyMySQL behind the test stand-in) and a `now` from the caller, so times follow Frappe's
`now_datetime()` (system time zone), like the `modified` column Frappe writes.
This package imports nothing itself, so `delivery/bundles.py` can import `records` and
`outcomes` while `write` and `requeue` import `delivery/bundles.py`.
"""
