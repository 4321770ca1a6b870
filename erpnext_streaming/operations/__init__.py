"""Operating the stream: status and health, requeue, replay, backfill, revaluation, schema export.

The modules are framework-free cores (a `frappe.db`-shaped `db`, a clock, plain values);
`site` is the Frappe glue the bench commands and `api.health` call. See docs/operations.md.
"""
