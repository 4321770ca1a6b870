"""Delivery: from Queued rows in the outbox to messages in Kafka. Framework-free except the
glue in `jobs` (drainer and sweeper entry points) and `wake` (the after-commit signal); see
docs/architecture.md, "Delivery".
"""
