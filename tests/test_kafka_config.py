"""librdkafka configuration: the property table, precedence, and secret redaction."""

from __future__ import annotations

import ctypes
import glob
import os
import tempfile
from pathlib import Path

import confluent_kafka
import pytest

from erpnext_streaming import kafka_properties as kp
from erpnext_streaming.kafka_config import (
	admin_config,
	connection_config,
	librdkafka_check,
	producer_config,
	redacted,
)
from erpnext_streaming.settings import StreamingConfig


def bundled_librdkafka_properties() -> dict[str, str]:
	"""Property name -> C/P column, printed by the librdkafka that confluent-kafka ships."""
	libs = glob.glob(
		os.path.join(os.path.dirname(confluent_kafka.__file__), "..", "confluent_kafka.libs", "librdkafka*")
	)
	assert libs, "confluent-kafka wheel bundles librdkafka"
	lib, libc = ctypes.CDLL(libs[0]), ctypes.CDLL("libc.so.6")
	libc.fopen.restype = ctypes.c_void_p
	with tempfile.TemporaryDirectory() as tmp:
		out = Path(tmp) / "props.txt"
		handle = libc.fopen(str(out).encode(), b"w")
		lib.rd_kafka_conf_properties_show(ctypes.c_void_p(handle))
		libc.fclose(ctypes.c_void_p(handle))
		lines = out.read_text().splitlines()
	table = {}
	for line in lines:
		parts = [p.strip() for p in line.split("|")]
		if len(parts) >= 6 and parts[1] in ("*", "P", "C"):
			table.setdefault(parts[0], parts[1])
	return table


@pytest.mark.parametrize(
	"key, value, why",
	[
		("lingerms", "5", ""),  # unknown
		("group.id", "x", " (a consumer property)"),
		("enable.auto.commit", "false", ""),  # consumer-only, and librdkafka refuses the value for a producer
		("socket.blocking.max.ms", "100", " (deprecated)"),
		("logger", "x", ""),  # confluent_kafka's Python option, not a librdkafka property
	],
)
def test_librdkafka_refuses_what_is_not_a_producer_property(key, value, why):
	error = librdkafka_check({key: value})
	assert error is not None
	if key != "enable.auto.commit":
		assert error.startswith(f"'{key}' is not a librdkafka producer property{why}")


@pytest.mark.parametrize("key, value", [("linger.ms", "5"), ("topic.metadata.refresh.sparse", "true")])
def test_librdkafka_accepts_producer_and_global_properties(key, value):
	assert librdkafka_check({key: value}) is None


def test_delivery_defaults_are_idempotent_java_compatible_and_lz4():
	conf = producer_config(StreamingConfig(bootstrap_servers="k:9092"))
	assert conf["enable.idempotence"] == "true" and conf["acks"] == "all"
	assert conf["partitioner"] == "murmur2_random" and conf["compression.type"] == "lz4"
	assert {"linger.ms", "message.timeout.ms"} <= set(conf)


def test_extra_properties_override_defaults_but_not_the_connection_fields():
	config = StreamingConfig(
		bootstrap_servers="k1:9092,k2:9092",
		client_id="erp-prod",
		producer_properties=(("compression.type", "zstd"), ("linger.ms", "100")),
	)
	conf = producer_config(config)
	assert (conf["compression.type"], conf["linger.ms"]) == ("zstd", "100")
	assert (conf["bootstrap.servers"], conf["client.id"]) == ("k1:9092,k2:9092", "erp-prod")


def test_sasl_ssl_configuration_carries_mechanism_credentials_and_ca():
	pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
	config = StreamingConfig(bootstrap_servers="k:9093", security_protocol="SASL_SSL",
		sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", ssl_ca_certificate=pem)  # fmt: skip
	conf = connection_config(config, sasl_password="s3cret")
	assert conf == {
		"bootstrap.servers": "k:9093", "client.id": "erpnext-streaming", "security.protocol": "SASL_SSL",
		"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "svc", "sasl.password": "s3cret", "ssl.ca.pem": pem,
	}  # fmt: skip
	assert redacted(conf)["sasl.password"] == "***"
	assert "s3cret" not in repr(redacted(producer_config(config, "s3cret")))


def test_plaintext_configuration_carries_no_sasl_or_tls():
	conf = connection_config(StreamingConfig(bootstrap_servers="k:9092", sasl_username="ignored"), "pw")
	assert set(conf) == {"bootstrap.servers", "client.id", "security.protocol"}


def test_test_connection_uses_the_connection_related_extra_properties_too():
	config = StreamingConfig(
		bootstrap_servers="k:9093",
		security_protocol="SSL",
		producer_properties=(("ssl.endpoint.identification.algorithm", "none"), ("linger.ms", "100")),
	)
	conf = admin_config(config)
	assert conf["ssl.endpoint.identification.algorithm"] == "none"  # as the producer will connect
	assert "linger.ms" not in conf  # producer tuning is not the admin client's business
	assert conf["bootstrap.servers"] == "k:9093"
