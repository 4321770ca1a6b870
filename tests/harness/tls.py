"""Throwaway certificates and an Apache Kafka node that terminates TLS and SASL itself.

Nothing here is committed key material: every CA and certificate is generated at test
time (the `cryptography` package) into a temporary directory removed at the end. The
broker (`secure_broker`) is harness/kafka.py's, with TLS listeners whose PEM key stores
hold certificates our CA signed, and SASL users (SCRAM and PLAIN) created at format time.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from harness.kafka import KafkaCluster, start_kafka
from harness.services import free_port

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def _name(common_name: str) -> x509.Name:
	return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder, expired: bool = False) -> x509.CertificateBuilder:
	"""Valid from 5 minutes ago for a day; `expired`: valid for a day until yesterday."""
	now = datetime.datetime.now(datetime.timezone.utc)
	if expired:
		return builder.not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(
			now - datetime.timedelta(days=1)
		)
	return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
		now + datetime.timedelta(days=1)
	)


def _san(host: str) -> x509.GeneralName:
	try:
		return x509.IPAddress(ipaddress.ip_address(host))
	except ValueError:
		return x509.DNSName(host)


@dataclass
class CertificateAuthority:
	"""A self-signed CA that issues server and client certificates."""

	name: str
	key: ec.EllipticCurvePrivateKey = field(repr=False)
	certificate: x509.Certificate = field(repr=False)

	@classmethod
	def create(cls, name: str) -> CertificateAuthority:
		key = ec.generate_private_key(ec.SECP256R1())
		builder = (
			_validity(x509.CertificateBuilder())
			.subject_name(_name(name))
			.issuer_name(_name(name))
			.public_key(key.public_key())
			.serial_number(x509.random_serial_number())
			.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
			.add_extension(
				x509.KeyUsage(
					digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
					key_encipherment=False, data_encipherment=False, key_agreement=False,
					encipher_only=False, decipher_only=False,
				),
				critical=True,
			)
			.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
		)  # fmt: skip
		return cls(name, key, builder.sign(key, hashes.SHA256()))

	@property
	def pem(self) -> str:
		return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

	def issue_server_certificate(self, hosts: tuple[str, ...], expired: bool = False) -> tuple[str, str]:
		"""(certificate PEM, private key PEM) of a TLS server certificate for `hosts`;
		`expired`: its validity ended yesterday."""
		names = x509.SubjectAlternativeName([_san(h) for h in hosts])
		return self._issue(hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, names, expired)

	def issue_client_certificate(self, name: str) -> tuple[str, str]:
		"""(certificate PEM, private key PEM) of a TLS client certificate (EKU clientAuth)
		whose subject is `CN=name`: the principal `User:CN=name` on a broker."""
		return self._issue(name, ExtendedKeyUsageOID.CLIENT_AUTH)

	def _issue(
		self, common_name: str, usage: x509.ObjectIdentifier, names=None, expired: bool = False
	) -> tuple[str, str]:
		key = ec.generate_private_key(ec.SECP256R1())
		builder = (
			_validity(x509.CertificateBuilder(), expired)
			.subject_name(_name(common_name))
			.issuer_name(self.certificate.subject)
			.public_key(key.public_key())
			.serial_number(x509.random_serial_number())
			.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
			.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
			.add_extension(
				x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
			)
		)
		if names is not None:
			builder = builder.add_extension(names, critical=False)
		certificate = builder.sign(self.key, hashes.SHA256())
		key_pem = key.private_bytes(
			serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
		)
		return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


@dataclass
class SecureBroker:
	"""An Apache Kafka node that terminates TLS itself, with a certificate our CA signed.

	Listeners (each advertises its own address, so every later connection a client makes
	uses the listener it bootstrapped from):
	- `tls_bootstrap`: SSL, or SASL_SSL when `authentication` is set;
	- `plain_bootstrap`: SASL_PLAINTEXT when `authentication` is set, else PLAINTEXT;
	- `wrong_host_bootstrap`: SSL with a certificate from the same CA for another host name;
	- `mtls_bootstrap`: SSL that requires a client certificate from our CA;
	- `expired_bootstrap`: SSL with a certificate from our CA for the right host whose
	  validity ended yesterday.
	SASL users (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN) are `users`, created at format time.
	"""

	ca: CertificateAuthority
	cluster: KafkaCluster
	tls_bootstrap: str
	plain_bootstrap: str
	wrong_host_bootstrap: str
	mtls_bootstrap: str
	expired_bootstrap: str
	authentication: bool
	users: dict[str, str]

	@property
	def cluster_id(self) -> str:
		return self.cluster.cluster_id


def _pem_file(workdir: Path, name: str, *parts: str) -> Path:
	path = workdir / name
	path.write_text("".join(parts))
	path.chmod(0o600)
	return path


def _ssl_listener(name: str, keystore: Path, truststore: Path | None = None) -> dict[str, str]:
	"""Per-listener TLS settings with PEM files (Kafka's `ssl.keystore.type=PEM`, KIP-651)."""
	prefix = f"listener.name.{name.lower()}."
	values = {f"{prefix}ssl.keystore.type": "PEM", f"{prefix}ssl.keystore.location": str(keystore)}
	if truststore:
		values |= {
			f"{prefix}ssl.truststore.type": "PEM",
			f"{prefix}ssl.truststore.location": str(truststore),
			f"{prefix}ssl.client.auth": "required",
		}
	return values


def _sasl_listener(name: str, users: dict[str, str]) -> dict[str, str]:
	prefix = f"listener.name.{name.lower()}."
	plain_users = " ".join(f'user_{user}="{password}"' for user, password in users.items())
	scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
	return {
		f"{prefix}sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
		f"{prefix}plain.sasl.jaas.config": (
			f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
		),
		f"{prefix}scram-sha-256.sasl.jaas.config": scram,
		f"{prefix}scram-sha-512.sasl.jaas.config": scram,
	}


@contextlib.contextmanager
def secure_broker(
	ca: CertificateAuthority, authentication: bool = False, users: dict[str, str] | None = None
) -> Iterator[SecureBroker]:
	workdir = Path(tempfile.mkdtemp(prefix="es-tls-"))
	users = users or {}
	ports = {name: free_port() for name in ("TLS", "PLAIN", "WRONGHOST", "MTLS", "EXPIRED")}
	keystore = _pem_file(workdir, "server.pem", *reversed(ca.issue_server_certificate(LOOPBACK_NAMES)))
	wrong = _pem_file(
		workdir, "wrong.pem", *reversed(ca.issue_server_certificate(("kafka.example.invalid",)))
	)
	expired = _pem_file(
		workdir, "expired.pem", *reversed(ca.issue_server_certificate(LOOPBACK_NAMES, expired=True))
	)
	truststore = _pem_file(workdir, "ca.pem", ca.pem)
	tls, plain = ("SASL_SSL", "SASL_PLAINTEXT") if authentication else ("SSL", "PLAINTEXT")
	protocols = {"TLS": tls, "PLAIN": plain, "WRONGHOST": "SSL", "MTLS": "SSL", "EXPIRED": "SSL"}

	def listeners(node) -> dict[str, str]:
		names = {"PLAINTEXT": node.port, "CONTROLLER": node.controller_port, **ports}
		addresses = [f"{name}://127.0.0.1:{port}" for name, port in names.items()]
		values = {
			"listeners": ",".join(addresses),
			"advertised.listeners": ",".join(a for a in addresses if not a.startswith("CONTROLLER")),
			"listener.security.protocol.map": ",".join(
				f"{name}:{protocols.get(name, 'PLAINTEXT')}" for name in names
			),
			**_ssl_listener("TLS", keystore),
			**_ssl_listener("WRONGHOST", wrong),
			**_ssl_listener("MTLS", keystore, truststore),
			**_ssl_listener("EXPIRED", expired),
		}
		if authentication:
			values |= _sasl_listener("TLS", users) | _sasl_listener("PLAIN", users)
		return values

	scram = [
		arg
		for user, password in users.items()
		for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
		for arg in ("--add-scram", f'{mechanism}=[name={user},password="{password}"]')
	]
	cluster = start_kafka(1, node_properties=listeners, format_args=scram)
	address = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
	try:
		yield SecureBroker(
			ca, cluster, address["TLS"], address["PLAIN"], address["WRONGHOST"], address["MTLS"],
			address["EXPIRED"], authentication, users,
		)  # fmt: skip
	finally:
		cluster.stop()
		shutil.rmtree(workdir, ignore_errors=True)
