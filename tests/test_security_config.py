"""Security at the configuration level: the exact client configuration for every protocol and
mechanism, redaction of secrets, and where a secret may (not) be stored.

What a real broker proved for these configurations is in tests/test_security_tls.py; what it
could not (a SCRAM login that succeeds, SASL PLAIN) is listed in docs/security.md.
"""

from __future__ import annotations

import pickle
import re

import pytest
from harness.tls import CertificateAuthority
from test_kafka_config import bundled_librdkafka_properties

from erpnext_streaming import kafka_properties as kp
from erpnext_streaming import validation as v
from erpnext_streaming.kafka_config import (
	connection_config,
	librdkafka_check,
	producer_config,
	redacted,
)
from erpnext_streaming.settings import StreamingConfig

PASSWORD = "pw-Zt7#q-config-level"


@pytest.fixture(scope="module")
def ca_pem():
	return CertificateAuthority.create("config-level CA").pem


def without_bootstrap(conf: dict[str, str]) -> dict[str, str]:
	return {k: val for k, val in conf.items() if k != "bootstrap.servers"}


@pytest.mark.parametrize(
	"protocol, mechanism",
	[
		("SASL_SSL", "PLAIN"),
		("SASL_SSL", "SCRAM-SHA-256"),
		("SASL_SSL", "SCRAM-SHA-512"),
		("SASL_PLAINTEXT", "PLAIN"),
		("SASL_PLAINTEXT", "SCRAM-SHA-512"),
	],
)
def test_sasl_client_configuration_is_exactly_the_settings_and_librdkafka_accepts_it(
	protocol, mechanism, ca_pem
):
	config = StreamingConfig(
		bootstrap_servers="kafka-1.example.com:9093,kafka-2.example.com:9093",
		client_id="erp-prod",
		security_protocol=protocol,
		sasl_mechanism=mechanism,
		sasl_username="erp-svc",
		ssl_ca_certificate=ca_pem if protocol == "SASL_SSL" else "",
	)
	conf = connection_config(config, PASSWORD)
	expected = {
		"bootstrap.servers": "kafka-1.example.com:9093,kafka-2.example.com:9093",
		"client.id": "erp-prod",
		"security.protocol": protocol,
		"sasl.mechanism": mechanism,
		"sasl.username": "erp-svc",
		"sasl.password": PASSWORD,
	}
	if protocol == "SASL_SSL":
		expected["ssl.ca.pem"] = ca_pem
	assert conf == expected
	# no verification switch is set, so librdkafka's defaults hold: certificate verification
	# on, ssl.endpoint.identification.algorithm=https (host name checked)
	assert producer_config(config, PASSWORD).items() >= conf.items()
	assert librdkafka_check(without_bootstrap(conf)) is None


def test_ssl_client_configuration_is_exactly_the_settings(ca_pem):
	config = StreamingConfig(bootstrap_servers="k:9093", security_protocol="SSL", ssl_ca_certificate=ca_pem)
	conf = connection_config(config, "ignored-without-sasl")
	assert conf == {
		"bootstrap.servers": "k:9093",
		"client.id": "erpnext-streaming",
		"security.protocol": "SSL",
		"ssl.ca.pem": ca_pem,
	}
	assert librdkafka_check(without_bootstrap(conf)) is None


def test_bundled_librdkafka_supports_every_mechanism_the_settings_offer():
	import confluent_kafka

	features = []
	producer = confluent_kafka.Producer({"logger": _Capture(features), "debug": "generic"})
	producer.flush(0)
	text = "\n".join(features)
	assert "sasl_plain" in text and "sasl_scram" in text and "ssl" in text, text
	assert set(kp.SASL_MECHANISMS) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}


class _Capture:
	def __init__(self, into: list[str]):
		self.into = into

	def log(self, level, msg, *args, **kwargs):
		self.into.append(msg % args if args else str(msg))


# -- redaction ------------------------------------------------------------------------------


def test_redacted_hides_every_secret_property_and_keeps_everything_else():
	secrets = {name: f"secret-{i}-value" for i, name in enumerate(sorted(kp.SECRET_PROPERTIES))}
	plain = {"bootstrap.servers": "k:9093", "sasl.username": "svc", "ssl.ca.pem": "-----BEGIN..."}
	shown = redacted({**secrets, **plain})
	assert set(shown) == set(secrets) | set(plain)
	assert all(shown[name] == "***" for name in secrets)
	assert {k: shown[k] for k in plain} == plain
	assert not any(value in repr(shown) for value in secrets.values())


def test_redacted_keeps_an_empty_secret_visibly_empty():
	assert redacted({"sasl.password": ""}) == {"sasl.password": ""}


def test_every_librdkafka_property_whose_value_is_a_secret_is_redacted():
	secret_name = re.compile(
		r"password|passphrase|secret|private\.key\.pem$|^ssl\.key\.pem$|oauthbearer\.config$"
	)
	table = bundled_librdkafka_properties()
	secrets = {name for name in table if secret_name.search(name)}
	assert "sasl.password" in secrets and "ssl.key.pem" in secrets  # the pattern does match
	assert secrets <= kp.SECRET_PROPERTIES, sorted(secrets - kp.SECRET_PROPERTIES)


def test_a_redacted_producer_config_holds_no_password():
	config = StreamingConfig(
		bootstrap_servers="k:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
		sasl_username="svc", producer_properties=(("linger.ms", "5"),),
	)  # fmt: skip
	conf = producer_config(config, PASSWORD)
	assert conf["sasl.password"] == PASSWORD
	assert PASSWORD not in repr(redacted(conf))
	assert redacted(conf)["linger.ms"] == "5"


# -- where secrets live ---------------------------------------------------------------------


def test_the_settings_snapshot_never_carries_the_sasl_password():
	"""StreamingConfig is cached in Redis and pickled into jobs; the password is read where used."""
	doc = {
		"bootstrap_servers": "k:9093",
		"security_protocol": "SASL_SSL",
		"sasl_mechanism": "SCRAM-SHA-512",
		"sasl_username": "svc",
		"sasl_password": PASSWORD,
	}
	config = StreamingConfig.from_doc(doc)
	assert config.sasl_username == "svc"
	assert PASSWORD not in repr(config)
	assert PASSWORD.encode() not in pickle.dumps(config)
	assert producer_config(config)["sasl.password"] == ""  # until the caller passes get_password()


@pytest.mark.parametrize("name", sorted(kp.SECRET_PROPERTIES - {"sasl.password"}))
def test_producer_properties_refuse_secrets_because_they_are_stored_unencrypted(name):
	with pytest.raises(v.InvalidSetting) as caught:
		v.validate_producer_properties([(name, "some-secret")], librdkafka_check)
	assert caught.value.fieldname == "producer_properties"
	assert f"'{name}' holds a secret" in caught.value.message
	assert "some-secret" not in caught.value.message


def test_sasl_password_in_producer_properties_points_to_the_encrypted_field():
	with pytest.raises(v.InvalidSetting) as caught:
		v.validate_producer_properties([("sasl.password", "some-secret")], librdkafka_check)
	assert "SASL Password field, which is stored encrypted" in caught.value.message
	assert "some-secret" not in caught.value.message


def test_non_secret_tls_properties_remain_available():
	v.validate_producer_properties(
		[("ssl.endpoint.identification.algorithm", "https"), ("ssl.key.location", "/etc/kafka/client.key")],
		librdkafka_check,
	)


# -- CA certificate --------------------------------------------------------------------------


def test_a_ca_certificate_librdkafka_can_read_is_accepted(ca_pem):
	v.validate_security("SSL", "", "", False, ca_pem, librdkafka_check)
	v.validate_security("SASL_SSL", "SCRAM-SHA-512", "svc", True, ca_pem, librdkafka_check)


def test_a_damaged_ca_certificate_is_refused_at_save_with_librdkafkas_reason(ca_pem):
	lines = ca_pem.splitlines()
	damaged = "\n".join([lines[0], lines[1][:-8] + "!!!!****", *lines[2:]]) + "\n"
	with pytest.raises(v.InvalidSetting) as caught:
		v.validate_security("SSL", "", "", False, damaged, librdkafka_check)
	assert caught.value.fieldname == "ssl_ca_certificate"
	assert caught.value.message.startswith("CA Certificate: ")
	assert "ssl.ca.pem" in caught.value.message


# -- client certificate (mutual TLS) -------------------------------------------------------


@pytest.fixture(scope="module")
def client_pair():
	return CertificateAuthority.create("client CA").issue_client_certificate("erp-streaming")


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_the_client_certificate_and_key_go_to_librdkafka_as_pem_and_it_accepts_them(
	protocol, client_pair, ca_pem
):
	certificate, key = client_pair
	config = StreamingConfig(
		bootstrap_servers="k:9093", security_protocol=protocol, ssl_ca_certificate=ca_pem,
		ssl_certificate=certificate, sasl_mechanism="SCRAM-SHA-512", sasl_username="svc",
	)  # fmt: skip
	conf = connection_config(config, PASSWORD, key)
	assert (conf["ssl.certificate.pem"], conf["ssl.key.pem"]) == (certificate, key)
	assert librdkafka_check(without_bootstrap(producer_config(config, PASSWORD, key))) is None
	assert redacted(conf)["ssl.key.pem"] == "***" and redacted(conf)["ssl.certificate.pem"] == certificate


def test_no_client_certificate_without_tls_or_without_its_key(client_pair):
	certificate, key = client_pair
	plain = StreamingConfig(bootstrap_servers="k:9092", ssl_certificate=certificate)
	assert "ssl.certificate.pem" not in connection_config(plain, None, key)
	tls = StreamingConfig(bootstrap_servers="k:9093", security_protocol="SSL", ssl_certificate=certificate)
	assert not {"ssl.certificate.pem", "ssl.key.pem"} & set(connection_config(tls))


def test_the_settings_snapshot_has_the_certificate_but_never_the_key(client_pair):
	certificate, key = client_pair
	doc = {"security_protocol": "SSL", "ssl_certificate": certificate, "ssl_key": key}
	config = StreamingConfig.from_doc(doc)
	assert config.ssl_certificate == certificate
	assert key not in repr(config) and key.encode() not in pickle.dumps(config)


def test_a_matching_client_certificate_and_key_are_accepted(client_pair):
	v.validate_client_certificate("SSL", *client_pair, librdkafka_check)
	v.validate_client_certificate("SASL_SSL", *client_pair, librdkafka_check)
	v.validate_client_certificate("PLAINTEXT", "", "", librdkafka_check)  # neither: fine


def test_client_certificate_rules_at_save_never_quote_the_key(client_pair):
	certificate, key = client_pair
	_, other_key = CertificateAuthority.create("other").issue_client_certificate("x")
	cases = [
		(("SSL", certificate, ""), "ssl_key", "Client Key is required"),
		(("SSL", "", key), "ssl_certificate", "Client Certificate is required"),
		(("PLAINTEXT", certificate, key), "ssl_certificate", "only used with SSL or SASL_SSL"),
		(("SSL", "not a pem", key), "ssl_certificate", "paste a PEM certificate"),
		(("SSL", certificate, "not a key"), "ssl_key", "paste a PEM private key"),
		(("SSL", certificate, key.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY")), "ssl_key", "encrypted"),
		# librdkafka loads the pair: a key of another certificate is refused, with its reason
		(("SSL", certificate, other_key), "ssl_key", "key values mismatch"),
	]
	for args, field, text in cases:
		with pytest.raises(v.InvalidSetting) as caught:
			v.validate_client_certificate(*args, librdkafka_check)
		assert (caught.value.fieldname, text in caught.value.message) == (field, True), caught.value.message
		assert key not in caught.value.message and other_key not in caught.value.message
	print(f"\nrefused at save: {[text for _, _, text in cases]}")


def test_a_key_pasted_into_the_one_line_password_field_gets_its_line_breaks_back(client_pair):
	certificate, key = client_pair
	for pasted in (key.replace("\n", ""), key.replace("\n", " ")):
		assert v.normalize_pem(pasted) == key
		v.validate_client_certificate("SSL", certificate, v.normalize_pem(pasted), librdkafka_check)


def test_the_client_certificate_cannot_be_set_in_producer_properties(client_pair):
	with pytest.raises(v.InvalidSetting, match="Client Certificate field"):
		v.validate_producer_properties([("ssl.certificate.pem", client_pair[0])], librdkafka_check)
	with pytest.raises(v.InvalidSetting, match="holds a secret"):
		v.validate_producer_properties([("ssl.key.pem", client_pair[1])], librdkafka_check)
