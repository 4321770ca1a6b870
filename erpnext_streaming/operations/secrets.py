"""Keep known secrets out of everything the operations layer shows or writes.

The SASL password is the only secret the app stores (docs/security.md). Nothing here
prints a configuration, and librdkafka's messages do not carry the password, but error
texts come from many places (Kafka, the database, the Event Log's `last_error`), so every
payload a command prints, `api.health` returns or an export writes goes through `redact`
as a last line of defence.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 3  # never "redact" every "a" of a one-letter test password


def redact(value: Any, secrets: Iterable[str | None]) -> Any:
	"""A copy of `value` (str, dict, list, tuple, nested) with every secret replaced by ***."""
	found = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
	# longest first, so a secret that contains another is masked whole
	return _redact(value, tuple(sorted(found, key=len, reverse=True))) if found else value


def _redact(value: Any, secrets: tuple[str, ...]) -> Any:
	if isinstance(value, str):
		for secret in secrets:
			value = value.replace(secret, MASK)
		return value
	if isinstance(value, dict):
		return {_redact(k, secrets): _redact(v, secrets) for k, v in value.items()}
	if isinstance(value, list | tuple):
		return type(value)(_redact(v, secrets) for v in value)
	return value
