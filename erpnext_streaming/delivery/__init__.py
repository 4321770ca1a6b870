"""Delivery: from Queued rows in the outbox to messages in Kafka.

Framework-free core: `state` (the Event Log state machine), `policy` (retry policy and
error classification), `producer` (adapter over confluent_kafka.Producer), `messages`
(Kafka key, value and CloudEvents headers of a row), `signals` (Redis wake-up list,
drainer heartbeat, circuit breaker), `drainer` (the long-running publish loop), with
`outcomes` (what became of a batch), `publisher` (its producer and dead-letter copies)
and `environment` (its configuration, clock, wake source, heartbeat and statistics),
`bundles` (the delivery queue's SQL) and `sweeper`. Frappe glue: `jobs` (drainer and
sweeper entry points) and `wake` (the after-commit signal). See docs/architecture.md, "Delivery".
"""
