"""Capture: doc_events entry points, the per-transaction buffer, payload builders."""
