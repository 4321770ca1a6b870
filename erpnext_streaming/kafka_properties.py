"""librdkafka producer configuration: what the app owns, keeps secret, defaults and guarantees.

Which property names exist is librdkafka's own business: `kafka_config.librdkafka_check`
asks the bundled library, so the app keeps no copy of its table.
"""

from __future__ import annotations

# Set from dedicated Streaming Settings fields (or fixed by the app); an extra property
# row may not override them, because the form would then show one value and the
# producer use another.
OWNED_PROPERTIES: dict[str, str] = {
	"bootstrap.servers": "set it in the Bootstrap Servers field",
	"metadata.broker.list": "set the brokers in the Bootstrap Servers field",
	"client.id": "set it in the Client ID field",
	"security.protocol": "set it in the Security Protocol field",
	"sasl.mechanism": "set it in the SASL Mechanism field",
	"sasl.mechanisms": "set it in the SASL Mechanism field",
	"sasl.username": "set it in the SASL Username field",
	"sasl.password": "set it in the SASL Password field, which is stored encrypted",
	"ssl.ca.pem": "paste the certificate into the CA Certificate field",
	"ssl.ca.location": "paste the certificate into the CA Certificate field",
	"ssl.certificate.pem": "paste the client certificate into the Client Certificate field",
	"transactional.id": "the app delivers with an idempotent producer, not transactions",
	"transaction.timeout.ms": "the app delivers with an idempotent producer, not transactions",
	"delivery.report.only.error": "every delivery report is needed to mark events Sent",
	"builtin.features": "it describes the library build and cannot be configured",
	"plugin.library.paths": "loading native plugins from settings would run code on the server",
	"sasl.kerberos.kinit.cmd": "running commands from settings is not allowed",
	"ssl.engine.location": "loading native engines from settings would run code on the server",
}

# Properties whose value is a secret: `kafka_config.redacted` hides them, and an extra
# property row may not hold them, because Producer Properties are stored unencrypted
# and appear in the form, the document's version history and any export. The SASL
# password and the client key (`ssl.key.pem`) have their own encrypted fields; the others
# have none (docs/security.md).
SECRET_PROPERTIES = frozenset(
	{
		"sasl.password",
		"ssl.key.password",
		"ssl.keystore.password",
		"ssl.key.pem",
		"sasl.oauthbearer.client.secret",
		"sasl.oauthbearer.client.credentials.client.secret",
		"sasl.oauthbearer.assertion.private.key.passphrase",
		"sasl.oauthbearer.assertion.private.key.pem",
		"sasl.oauthbearer.config",
	}
)

# The delivery defaults the issue and the architecture doc promise; extra property rows
# override any of them.
DEFAULT_PRODUCER_PROPERTIES: dict[str, str] = {
	"enable.idempotence": "true",
	"acks": "all",
	# Java client compatible: the partition of a key equals what Kafka Streams,
	# ksqlDB and Java producers compute for the same key.
	"partitioner": "murmur2_random",
	"compression.type": "lz4",
	# librdkafka's own default: the drainer hands it a whole batch at once, so a longer
	# linger only delays each batch's first send (docs/architecture.md, "Tuning").
	"linger.ms": "5",
	"message.timeout.ms": "30000",
	# a topic missing from the cluster (auto.create.topics.enable=false) is reported as
	# UNKNOWN_TOPIC_OR_PART (held, naming the topic) after this, well before the message
	# timeout would report it as a timeout (librdkafka's default is 30000, the same as it)
	"topic.metadata.propagation.max.ms": "10000",
}

# The delivery guarantees (docs/architecture.md) rest on these producer settings, so an
# extra property row may change them only within what keeps the guarantee. librdkafka
# CONFIGURATION.md: the idempotent producer needs acks=all and at most 5 requests in flight
# per connection to keep order across retries; murmur2 and murmur2_random put a key where
# Java clients do; message.timeout.ms 0 means "never time out" (a batch would wait forever
# on a broker that is gone) and a very short one turns every leader election into a failed
# batch sent again.
MIN_MESSAGE_TIMEOUT_MS = 5000
MAX_IN_FLIGHT = 5


def _integer(value: str) -> int | None:
	try:
		return int(value)
	except ValueError:
		return None


def _at_most_in_flight(value: str) -> bool:
	number = _integer(value)
	return number is not None and 1 <= number <= MAX_IN_FLIGHT


def _long_enough(value: str) -> bool:
	number = _integer(value)
	return number is not None and number >= MIN_MESSAGE_TIMEOUT_MS


_ALL_ACKS = (
	lambda v: v.lower() in ("all", "-1"),
	"must stay all (-1): events must be on every in-sync replica",
)
_IN_FLIGHT = (
	_at_most_in_flight,
	f"must be 1 to {MAX_IN_FLIGHT}: the idempotent producer keeps order only up to {MAX_IN_FLIGHT}",
)
_TIMEOUT = (
	_long_enough,
	f"must be at least {MIN_MESSAGE_TIMEOUT_MS} (0 never times out; shorter fails every leader election)",
)
# librdkafka names several of these twice (an alias each): one rule serves both names
GUARANTEES: dict[str, tuple[object, str]] = {
	"enable.idempotence": (
		lambda v: v.lower() == "true",
		"must stay true: without the idempotent producer a retry can write an event twice or out of order",
	),
	"acks": _ALL_ACKS,
	"request.required.acks": _ALL_ACKS,
	"partitioner": (
		lambda v: v in ("murmur2", "murmur2_random"),
		"must be murmur2_random or murmur2: a company's events go to the partition Java clients compute",
	),
	"max.in.flight.requests.per.connection": _IN_FLIGHT,
	"max.in.flight": _IN_FLIGHT,
	"message.timeout.ms": _TIMEOUT,
	"delivery.timeout.ms": _TIMEOUT,
}


def guarantee_problem(key: str, value: str) -> str | None:
	"""Why this producer property value would break a delivery guarantee, or None."""
	rule = GUARANTEES.get(key)
	if rule is None or rule[0](value.strip()):
		return None
	return rule[1]


SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
