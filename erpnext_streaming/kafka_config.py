"""Turn Streaming Settings into librdkafka configuration, and check it with librdkafka.

Precedence, lowest first: the delivery defaults (`DEFAULT_PRODUCER_PROPERTIES`), the
admin's extra producer properties, then the connection fields the app owns. Secrets are
passed in by the caller (`doc.get_password("sasl_password")`, `doc.get_password("ssl_key")`)
and never stored here.
"""

from __future__ import annotations

import re

from erpnext_streaming import kafka_properties as kp
from erpnext_streaming.settings import StreamingConfig


def connection_config(
	config: StreamingConfig, sasl_password: str | None = None, ssl_key: str | None = None
) -> dict[str, str]:
	"""The librdkafka properties every client of the cluster needs (producer and admin).
	`ssl_key`: the PEM private key of the Client Certificate (mutual TLS)."""
	conf = {
		"bootstrap.servers": config.bootstrap_servers,
		"client.id": config.client_id,
		"security.protocol": config.security_protocol,
	}
	if config.security_protocol.startswith("SASL"):
		conf["sasl.mechanism"] = config.sasl_mechanism
		conf["sasl.username"] = config.sasl_username
		conf["sasl.password"] = sasl_password or ""
	if config.security_protocol.endswith("SSL"):
		if config.ssl_ca_certificate:
			conf["ssl.ca.pem"] = config.ssl_ca_certificate
		if config.ssl_certificate and ssl_key:
			conf["ssl.certificate.pem"] = config.ssl_certificate
			conf["ssl.key.pem"] = ssl_key
	return conf


# every property `connection_config` may set
CONNECTION_KEYS = frozenset(
	{
		"bootstrap.servers", "client.id", "security.protocol", "sasl.mechanism", "sasl.username",
		"sasl.password", "ssl.ca.pem", "ssl.certificate.pem", "ssl.key.pem",
	}
)  # fmt: skip

# Extra properties that change how a client reaches and trusts the cluster. The admin
# client behind "Test connection" and health checks uses them too, so a test passes only
# when the producer's own connection would (e.g. a relaxed hostname check).
_CONNECTION_PREFIXES = ("ssl.", "enable.ssl.", "sasl.", "socket.", "broker.address.", "client.dns.", "https.")


def connection_properties(conf: dict[str, str]) -> dict[str, str]:
	"""Of a client configuration (a producer's), the properties that say how to reach and
	trust the cluster: what an admin client of the same cluster needs."""
	return {k: v for k, v in conf.items() if k in CONNECTION_KEYS or k.startswith(_CONNECTION_PREFIXES)}


def admin_config(
	config: StreamingConfig, sasl_password: str | None = None, ssl_key: str | None = None
) -> dict[str, str]:
	"""`connection_config` plus the admin's connection-related extra properties."""
	extras = {k: v for k, v in config.producer_properties if k.startswith(_CONNECTION_PREFIXES)}
	return {**extras, **connection_config(config, sasl_password, ssl_key)}


def producer_config(
	config: StreamingConfig, sasl_password: str | None = None, ssl_key: str | None = None
) -> dict[str, str]:
	conf = dict(kp.DEFAULT_PRODUCER_PROPERTIES)
	conf.update(dict(config.producer_properties))
	conf.update(connection_config(config, sasl_password, ssl_key))
	return conf


def redacted(conf: dict[str, str]) -> dict[str, str]:
	"""A copy safe to log or show: secret values replaced by `***`."""
	return {k: ("***" if k in kp.SECRET_PROPERTIES and v else v) for k, v in conf.items()}


def librdkafka_check(props: dict[str, str]) -> str | None:
	"""Ask librdkafka whether it accepts these producer properties; the error text or None.

	librdkafka's own property table decides (the app keeps no copy of it): it refuses unknown
	names and bad values, and warns (CONFWARN, served by `poll`) about consumer-only and
	deprecated properties, which are refused too. Without bootstrap servers the producer
	connects nowhere; it is discarded at once.
	"""
	from confluent_kafka import KafkaException, Producer

	if "logger" in props:  # confluent_kafka's Python option, set here by the check itself
		return _refusal("logger")
	warnings = _Warnings()
	try:
		Producer({**props, "log_level": 4, "logger": warnings}).poll(0)
	except KafkaException as e:
		text = e.args[0].str() if e.args and hasattr(e.args[0], "str") else str(e)
		return _unknown(text) or text
	except (TypeError, ValueError, AttributeError) as e:
		return str(e)
	return next(filter(None, map(_unknown, warnings.messages)), None)


_UNKNOWN = re.compile(
	r'No such configuration property: "([^"]+)"|Configuration property (\S+) is (a consumer property|deprecated)'
)


def _unknown(text: str) -> str | None:
	match = _UNKNOWN.search(text)
	return _refusal(match[1] or match[2], match[3]) if match else None


def _refusal(name: str, why: str | None = None) -> str:
	return f"'{name}' is not a librdkafka producer property{f' ({why})' if why else ''}; see CONFIGURATION.md"


class _Warnings:
	def __init__(self) -> None:
		self.messages: list[str] = []

	def log(self, level: int, fmt: str, *args) -> None:
		self.messages.append(fmt % args if args else fmt)
