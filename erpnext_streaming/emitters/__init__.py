"""Capture: turn in-memory documents into event records (builders, envelope) and buffer them."""
