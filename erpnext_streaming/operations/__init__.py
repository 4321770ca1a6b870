"""Operating the stream: status and health, requeue, replay, backfill, revaluation, schema export.

Framework-free cores (each takes a `frappe.db`-shaped `db`, a clock and plain values):
- `status`: counts, ages, last sent, per-topic totals, the health payload, text rendering
- `replay`: re-queue copies of Sent events (same event ids) through the outbox
- `jobs`: the Streaming Backfill table (checkpoints) and the chunked, resumable run loop
- `backfill`: which historical documents a backfill visits, in chunks
- `revaluation`: which stock ledger rows a completed Repost Item Valuation rewrote
- `reconcile`: ledger figures from the topics vs ERPNext's own (`streaming reconcile`)
- `schema_export`: `.avsc` files and a manifest for a schema registry or consumers
- `progress`: a progress bar with rate and ETA
- `secrets`: redaction of known secrets from anything shown

Frappe glue: `site` (reads the site's settings, catalog, codec and Kafka connection and
calls the cores; also the Repost Item Valuation hook and the revaluation job). The bench
commands (`erpnext_streaming.commands`) and the whitelisted `api.health` are thin layers
over `site`. See docs/operations.md.
"""
