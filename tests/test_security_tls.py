"""SSL and SASL through the app's own configuration, against Apache Kafka terminating TLS.

Every client here is built from `StreamingConfig` by `kafka_config.connection_config` /
`producer_config`, exactly as the Test connection button and the producer build theirs.
The endpoints (tests/harness/tls.py): an Apache Kafka node whose TLS listeners present
certificates a throwaway CA signed; the SASL one knows one user for SCRAM-SHA-256,
SCRAM-SHA-512 and PLAIN. What this proves: docs/security.md.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from harness.tls import CertificateAuthority, secure_broker

from erpnext_streaming.cluster import describe_cluster
from erpnext_streaming.kafka_config import connection_config, producer_config
from erpnext_streaming.settings import StreamingConfig

pytestmark = pytest.mark.integration

PASSWORD = "pw-8Xq!vL2#zR-not-in-any-log"
USERNAME = "erp-streaming-svc"
VERIFY_FAILED = "certificate verify failed"


@pytest.fixture(scope="module")
def ca():
	return CertificateAuthority.create("erpnext_streaming test CA")


@pytest.fixture(scope="module")
def other_ca():
	return CertificateAuthority.create("some other CA")


@pytest.fixture(scope="module")
def tls_broker(ca):
	with secure_broker(ca) as broker:
		yield broker


@pytest.fixture(scope="module")
def sasl_broker(ca):
	with secure_broker(ca, authentication=True, users={USERNAME: PASSWORD}) as broker:
		yield broker


def ssl_settings(bootstrap: str, ca_pem: str = "", **extra) -> StreamingConfig:
	return StreamingConfig(
		bootstrap_servers=bootstrap, security_protocol="SSL", ssl_ca_certificate=ca_pem, **extra
	)


def sasl_settings(
	bootstrap: str, protocol: str, mechanism: str, ca_pem: str = "", **extra
) -> StreamingConfig:
	return StreamingConfig(
		bootstrap_servers=bootstrap,
		security_protocol=protocol,
		sasl_mechanism=mechanism,
		sasl_username=USERNAME,
		ssl_ca_certificate=ca_pem,
		**extra,
	)


class Collected:
	"""Everything a client says: librdkafka log lines, error_cb errors, delivery reports."""

	def __init__(self):
		self.logs: list[str] = []
		self.errors: list[str] = []
		self.reports: list[str] = []

	def log(self, level, msg, *args, **kwargs) -> None:  # confluent-kafka calls logger.log like logging
		self.logs.append(msg % args if args else str(msg))

	def text(self) -> str:
		return "\n".join(self.logs + self.errors + self.reports)

	def hooks(self) -> dict:
		return {"logger": self, "error_cb": lambda err: self.errors.append(err.str())}


def produce_one(conf: dict, topic: str, flush_timeout: float = 20) -> tuple[Collected, list]:
	seen = Collected()
	delivered = []

	def on_delivery(err, msg):
		delivered.append((err, msg.partition() if err is None else None))
		if err is not None:
			seen.reports.append(err.str())

	producer = Producer({**conf, **seen.hooks()})
	producer.produce(topic, key=b"Company A", value=b"invoice SINV-0001", on_delivery=on_delivery)
	producer.flush(flush_timeout)
	return seen, delivered


# -- SSL with CA verification ---------------------------------------------------------------


def test_ssl_with_our_ca_describes_the_cluster_and_every_broker_address_is_the_tls_listener(tls_broker, ca):
	conf = connection_config(ssl_settings(tls_broker.tls_bootstrap, ca.pem))
	assert conf["security.protocol"] == "SSL" and conf["ssl.ca.pem"] == ca.pem
	result = describe_cluster(conf, timeout=15)
	assert result["ok"] is True, result
	assert result["cluster_id"] == tls_broker.cluster_id
	# the broker advertises its TLS listener: every later connection is TLS too
	assert result["brokers"] == [tls_broker.tls_bootstrap]


def test_ssl_with_our_ca_produces_with_the_app_producer_config_and_the_message_reads_back(tls_broker, ca):
	settings = ssl_settings(tls_broker.tls_bootstrap, ca.pem)
	topic = f"sec-tls-{uuid.uuid4().hex[:8]}"
	admin = AdminClient(connection_config(settings))
	admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(15)

	conf = producer_config(settings)
	assert conf["enable.idempotence"] == "true" and conf["security.protocol"] == "SSL"
	seen, delivered = produce_one(conf, topic)
	assert delivered == [(None, 0)], seen.text()

	consumer = Consumer(
		{**connection_config(settings), "group.id": topic, "enable.auto.commit": False, "logger": Collected()}
	)
	try:
		consumer.assign([TopicPartition(topic, 0, 0)])
		message = consumer.poll(15)
	finally:
		consumer.close()
	assert message is not None and message.error() is None
	assert (message.key(), message.value()) == (b"Company A", b"invoice SINV-0001")


def test_ssl_with_a_different_ca_fails_certificate_verification(tls_broker, other_ca):
	settings = ssl_settings(
		tls_broker.tls_bootstrap, other_ca.pem, producer_properties=(("message.timeout.ms", "4000"),)
	)
	result = describe_cluster(connection_config(settings), timeout=3)
	assert result["ok"] is False
	assert VERIFY_FAILED in result["error"], result["error"]

	# the producer verifies too: nothing is delivered, and the reason is the certificate
	seen, delivered = produce_one(producer_config(settings), "sec-never-created", flush_timeout=15)
	assert len(delivered) == 1 and delivered[0][0] is not None
	assert VERIFY_FAILED in "\n".join(seen.errors), seen.text()


def test_ssl_without_a_ca_certificate_trusts_only_the_system_store_so_a_private_ca_is_refused(tls_broker):
	conf = connection_config(ssl_settings(tls_broker.tls_bootstrap))
	assert "ssl.ca.pem" not in conf
	result = describe_cluster(conf, timeout=3)
	assert result["ok"] is False
	assert VERIFY_FAILED in result["error"], result["error"]


def test_a_certificate_from_our_ca_for_another_host_name_is_refused_by_hostname_verification(tls_broker, ca):
	conf = connection_config(ssl_settings(tls_broker.wrong_host_bootstrap, ca.pem))
	# the app leaves ssl.endpoint.identification.algorithm to librdkafka's default (https)
	assert "ssl.endpoint.identification.algorithm" not in conf
	result = describe_cluster(conf, timeout=3)
	assert result["ok"] is False
	assert VERIFY_FAILED in result["error"], result["error"]
	# same CA, same broker: only the host name check differs, and turning it off connects
	assert describe_cluster({**conf, "ssl.endpoint.identification.algorithm": "none"}, timeout=15)["ok"]


def test_the_tls_listener_refuses_a_plaintext_client(tls_broker):
	result = describe_cluster(
		connection_config(StreamingConfig(bootstrap_servers=tls_broker.tls_bootstrap)), 3
	)
	assert result["ok"] is False


# -- SASL_SSL / SASL_PLAINTEXT --------------------------------------------------------------


WRONG_PASSWORD = "pw-not-the-one-the-broker-has"


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_with_the_right_password_describes_the_cluster_over_verified_tls(sasl_broker, ca, mechanism):
	conf = connection_config(
		sasl_settings(sasl_broker.tls_bootstrap, "SASL_SSL", mechanism, ca.pem), PASSWORD
	)
	assert (conf["sasl.mechanism"], conf["sasl.username"], conf["sasl.password"]) == (
		mechanism,
		USERNAME,
		PASSWORD,
	)
	result = describe_cluster(conf, timeout=15)
	assert result["ok"] is True, result
	assert result["brokers"] == [sasl_broker.tls_bootstrap]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_with_a_wrong_password_is_refused_once_and_the_password_is_never_shown(
	sasl_broker, ca, mechanism
):
	refusal = (
		"Invalid username or password"
		if mechanism == "PLAIN"
		else f"invalid credentials with SASL mechanism {mechanism}"
	)
	conf = connection_config(
		sasl_settings(sasl_broker.tls_bootstrap, "SASL_SSL", mechanism, ca.pem), WRONG_PASSWORD
	)
	result = describe_cluster(conf, timeout=3)
	assert result["ok"] is False
	error = result["error"]
	assert "sasl_ssl://" in error and VERIFY_FAILED not in error  # TLS was verified, then SASL ran
	assert refusal in error, error
	assert error.count(refusal) == 1, "each cause is reported once"
	assert WRONG_PASSWORD not in error


def test_sasl_ssl_with_a_different_ca_stops_at_the_certificate_before_any_credentials_are_sent(
	sasl_broker, other_ca
):
	conf = connection_config(
		sasl_settings(sasl_broker.tls_bootstrap, "SASL_SSL", "SCRAM-SHA-512", other_ca.pem), PASSWORD
	)
	error = describe_cluster(conf, timeout=3)["error"]
	assert VERIFY_FAILED in error and "SASL" not in error.replace("sasl_ssl://", ""), error


def test_sasl_plaintext_scram_authenticates_and_a_wrong_password_is_refused(sasl_broker):
	settings = sasl_settings(sasl_broker.plain_bootstrap, "SASL_PLAINTEXT", "SCRAM-SHA-512")
	assert describe_cluster(connection_config(settings, PASSWORD), timeout=15)["ok"] is True
	error = describe_cluster(connection_config(settings, WRONG_PASSWORD), timeout=3)["error"]
	assert "sasl_plaintext://" in error and "invalid credentials with SASL mechanism SCRAM-SHA-512" in error
	assert WRONG_PASSWORD not in error


def test_a_broker_requiring_sasl_refuses_a_client_without_it(sasl_broker, ca):
	result = describe_cluster(connection_config(ssl_settings(sasl_broker.tls_bootstrap, ca.pem)), timeout=3)
	assert result["ok"] is False


# -- secrets in logs, errors and delivery reports -------------------------------------------


def test_producer_debug_logs_errors_and_delivery_reports_never_contain_the_sasl_password(sasl_broker, ca):
	settings = sasl_settings(
		sasl_broker.tls_bootstrap, "SASL_SSL", "SCRAM-SHA-512", ca.pem,
		producer_properties=(("debug", "all"), ("message.timeout.ms", "4000")),
	)  # fmt: skip
	conf = producer_config(settings, PASSWORD)
	assert conf["sasl.password"] == PASSWORD and conf["debug"] == "all"
	seen, delivered = produce_one(conf, "sec-sasl", flush_timeout=15)
	assert delivered == [(None, 0)], seen.text()  # authenticated, delivered
	text = seen.text()
	# the logs did cover the configuration, the verified TLS handshake and the SCRAM exchange
	# up to the proof computed from the password...
	assert "sasl.password = [redacted]" in text
	assert "Broker SSL certificate verified" in text
	assert "SASL SCRAM client in state client-final-message" in text
	# ...and the password is nowhere in them
	assert PASSWORD not in text


def test_admin_client_debug_logs_never_contain_the_sasl_password(sasl_broker, ca):
	conf = connection_config(
		sasl_settings(sasl_broker.tls_bootstrap, "SASL_SSL", "SCRAM-SHA-256", ca.pem), PASSWORD
	)
	seen = Collected()
	admin = AdminClient({**conf, "debug": "security,broker,conf", **seen.hooks()})
	assert admin.list_topics(timeout=15).brokers  # authenticated
	admin.poll(0)
	text = seen.text()
	assert "sasl.password = [redacted]" in text
	assert "SASL SCRAM client in state client-final-message" in text
	assert PASSWORD not in text


# -- mutual TLS (client certificates) and the reasons a TLS connection fails -----------------


def mtls_settings(broker, ca, certificate: str = "", **extra) -> StreamingConfig:
	return ssl_settings(broker.mtls_bootstrap, ca.pem, ssl_certificate=certificate, **extra)


def test_mtls_with_a_client_certificate_from_the_brokers_ca_connects_and_the_app_producer_delivers(
	tls_broker, ca
):
	certificate, key = ca.issue_client_certificate("erp-streaming")
	settings = mtls_settings(tls_broker, ca, certificate)
	conf = connection_config(settings, ssl_key=key)
	result = describe_cluster(conf, timeout=15)
	assert result["ok"] is True and result["brokers"] == [tls_broker.mtls_bootstrap], result
	topic = f"sec-mtls-{uuid.uuid4().hex[:8]}"
	admin = AdminClient(conf)
	admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(15)
	seen, delivered = produce_one(producer_config(settings, ssl_key=key), topic)
	assert delivered == [(None, 0)], seen.text()
	assert key not in seen.text()


def test_mtls_without_a_client_certificate_or_with_one_from_another_ca_is_refused_clearly(
	tls_broker, ca, other_ca
):
	certificate, key = other_ca.issue_client_certificate("erp-streaming")
	for label, conf in (
		("none", connection_config(mtls_settings(tls_broker, ca))),
		("other CA", connection_config(mtls_settings(tls_broker, ca, certificate), ssl_key=key)),
	):
		result = describe_cluster(conf, timeout=3)
		assert result["ok"] is False
		assert result["error"].startswith("the broker rejected this client's certificate"), result["error"]
		assert "set Client Certificate and Client Key in Streaming Settings" in result["error"]
		assert "bad certificate" in result["error"]  # librdkafka's own words follow
		assert key not in result["error"]
		print(f"\nmTLS, client certificate {label}: {result['error'][:160]}")


def test_an_expired_broker_certificate_is_named_as_expired_by_test_connection(tls_broker, ca):
	result = describe_cluster(connection_config(ssl_settings(tls_broker.expired_bootstrap, ca.pem)), 3)
	assert result["ok"] is False
	assert result["error"].startswith("the broker's certificate expired on "), result["error"]
	assert VERIFY_FAILED in result["error"]
	print(f"\nexpired: {result['error'][:120]}")


def test_test_connection_says_which_certificate_check_failed(tls_broker, ca, other_ca):
	wrong_host = describe_cluster(connection_config(ssl_settings(tls_broker.wrong_host_bootstrap, ca.pem)), 3)
	assert wrong_host["error"].startswith(
		"the broker's certificate is for kafka.example.invalid, not 127.0.0.1"
	), wrong_host
	untrusted = describe_cluster(connection_config(ssl_settings(tls_broker.tls_bootstrap, other_ca.pem)), 3)
	assert untrusted["error"].startswith(
		"the broker's certificate was issued by CN=erpnext_streaming test CA, which the CA in CA Certificate"
	), untrusted
	no_ca = describe_cluster(connection_config(ssl_settings(tls_broker.tls_bootstrap)), 3)
	assert "the system trust store (CA Certificate is empty) does not include" in no_ca["error"], no_ca
	for answer in (wrong_host, untrusted, no_ca):
		print(f"\n{answer['error'][:150]}")
