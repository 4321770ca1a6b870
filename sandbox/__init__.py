"""The sandbox: a SYNTHETIC ERPNext workload streamed through the app's real capture,
outbox and drainer code to a local Kafka-protocol broker, with a live view read back
through the consumer kit. Run it with `scripts/sandbox` (README "Sandbox").

Not shipped with the Frappe app (it lives outside the `erpnext_streaming` package) and
not Frappe: no Frappe or ERPNext runs here. The sandbox drives the framework-free cores
directly, the same functions the app's hooks and drainer job call.
"""
