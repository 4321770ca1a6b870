"""Why a TLS connection to a broker failed, in words an admin can act on.

librdkafka says `certificate verify failed` alike for an expired broker certificate, one
from an untrusted CA and one for another host name, and `ssl/tls alert bad certificate`
when the broker rejects the client's certificate. After such a failure, `explain` fetches
the broker's certificate without verifying it (Python's ssl) and compares it with the
settings: its validity dates, its names, its issuer. Used by `cluster.describe_cluster`
(Test connection, `bench streaming check-connection`, health); never sends a credential.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import re
import ssl

VERIFY_FAILED = "certificate verify failed"
_TLS_ALERT = "ssl/tls alert"
_ADDRESS = re.compile(r"ssl://([^/\s]+):(\d+)/")


def explain(conf: dict[str, str], error: str, timeout: float = 3.0) -> str | None:
	"""A sentence on what to fix, or None when the error is not about certificates."""
	if _TLS_ALERT in error and "certificate" in error:
		return (
			"the broker rejected this client's certificate (it requires one from a CA it trusts): "
			"set Client Certificate and Client Key in Streaming Settings"
		)
	if VERIFY_FAILED not in error:
		return None
	match = _ADDRESS.search(error)
	if not match:
		return None
	host, port = match.group(1), int(match.group(2))
	try:
		pem = ssl.get_server_certificate((host, port), timeout=timeout)
		return _compare(pem, host, conf.get("ssl.ca.pem", ""))
	except Exception:
		return None


def _compare(pem: str, host: str, ca_pem: str) -> str | None:
	from cryptography import x509

	certificate = x509.load_pem_x509_certificate(pem.encode())
	now = datetime.datetime.now(datetime.timezone.utc)
	start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
	if now > end:
		return f"the broker's certificate expired on {end:%Y-%m-%d %H:%M} UTC: the broker needs a renewed one"
	if now < start:
		return f"the broker's certificate is valid only from {start:%Y-%m-%d %H:%M} UTC (check the clocks)"
	issuer = certificate.issuer.rfc4514_string()
	if not _issued_by_any(certificate, ca_pem):
		where = "the CA in CA Certificate" if ca_pem else "the system trust store (CA Certificate is empty)"
		return f"the broker's certificate was issued by {issuer}, which {where} does not include"
	names = _names(certificate)
	if not any(_matches(name, host) for name in names):
		return (
			f"the broker's certificate is for {', '.join(names) or 'no host name'}, not {host}: "
			"use a name it carries in Bootstrap Servers (and the brokers' advertised listeners)"
		)
	return None


def _issued_by_any(certificate, ca_pem: str) -> bool:
	from cryptography import x509

	if not ca_pem:
		return False
	for ca in x509.load_pem_x509_certificates(ca_pem.encode()):
		try:
			certificate.verify_directly_issued_by(ca)
			return True
		except Exception:
			continue
	return False


def _names(certificate) -> list[str]:
	from cryptography import x509

	try:
		san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
	except x509.ExtensionNotFound:
		return []
	return [str(n) for n in san.get_values_for_type(x509.DNSName)] + [
		str(n) for n in san.get_values_for_type(x509.IPAddress)
	]


def _matches(name: str, host: str) -> bool:
	with contextlib.suppress(ValueError):
		return ipaddress.ip_address(host) == ipaddress.ip_address(name)
	name, host = name.lower().rstrip("."), host.lower().rstrip(".")
	if name.startswith("*."):
		return "." in host and host.split(".", 1)[1] == name[2:]
	return name == host
