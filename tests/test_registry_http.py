"""The registry path a real Confluent-compatible registry takes (the `mock://` client has no
compatibility endpoint and no HTTP): confluent_kafka's own `SchemaRegistryClient` talks
HTTP to a small registry of the test's own on loopback that answers the documented REST
API (subjects, compatibility, register, config, ids; Confluent's error codes). Checks
basic auth / API key, the registry's compatibility verdict, its 409 refusal at register,
and which failures are retriable."""

from __future__ import annotations

import base64
import io
import json
import re
import threading
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fastavro
import pytest
from harness.services import free_port

from erpnext_streaming.delivery import framing
from erpnext_streaming.schemas import SchemaRegistry
from erpnext_streaming.schemas.registry import PACKAGE_DIR

FIXTURES = Path(__file__).parent / "fixtures" / "schemas"
TOY_V1 = SchemaRegistry([PACKAGE_DIR, FIXTURES / "base"]).get("Toy Order", 1)
TOY_V2 = SchemaRegistry([PACKAGE_DIR, FIXTURES / "base", FIXTURES / "compatible"]).get("Toy Order", 2)
KEY, SECRET = "API-KEY-1", "s3cr3t-api-secret"
TOPIC = "erpnext.toy"
SUBJECT = f"{TOPIC}-io.erpnext.streaming.ToyOrderEvent"


class Registry(ThreadingHTTPServer):
	"""The REST answers of a Confluent Schema Registry, for the few calls the app makes."""

	def __init__(self):
		super().__init__(("127.0.0.1", free_port()), Handler)
		self.subjects: dict[str, list[tuple[int, str]]] = {}
		self.ids: dict[int, str] = {}
		self.compatible = True
		self.refuse_register = False
		self.down = False
		self.requests: list[tuple[str, str, str]] = []  # (method, path, authorization)

	@property
	def url(self) -> str:
		return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
	server: Registry

	def log_message(self, *args):
		pass

	def reply(self, status: int, body: dict) -> None:
		data = json.dumps(body).encode()
		self.send_response(status)
		self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
		self.send_header("Content-Length", str(len(data)))
		self.end_headers()
		self.wfile.write(data)

	def do_GET(self):
		self.handle_request("GET")

	def do_POST(self):
		self.handle_request("POST")

	def handle_request(self, method: str) -> None:
		registry = self.server
		path = self.path.split("?")[0]
		auth = self.headers.get("Authorization", "")
		registry.requests.append((method, path, auth))
		body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
		if registry.down:
			return self.reply(503, {"error_code": 50003, "message": "Error while forwarding the request"})
		if auth != "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode():
			return self.reply(401, {"error_code": 40101, "message": "Unauthorized"})
		if m := re.fullmatch(r"/subjects/([^/]+)", path):  # look a schema up
			versions = registry.subjects.get(m[1])
			if versions is None:
				return self.reply(404, {"error_code": 40401, "message": f"Subject '{m[1]}' not found."})
			for version, (schema_id, text) in enumerate(versions, 1):
				if json.loads(text) == json.loads(body["schema"]):
					return self.reply(
						200, {"subject": m[1], "id": schema_id, "version": version, "schema": text}
					)
			return self.reply(404, {"error_code": 40403, "message": "Schema not found"})
		if m := re.fullmatch(r"/compatibility/subjects/([^/]+)/versions", path):
			if m[1] not in registry.subjects:
				return self.reply(404, {"error_code": 40401, "message": f"Subject '{m[1]}' not found."})
			return self.reply(200, {"is_compatible": registry.compatible})
		if m := re.fullmatch(r"/subjects/([^/]+)/versions", path):  # register
			if registry.refuse_register:
				return self.reply(409, {"error_code": 409, "message": (
					f"Schema being registered is incompatible with an earlier schema for subject \"{m[1]}\", "
					"details: [{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'region'}]")})  # fmt: skip
			schema_id = len(registry.ids) + 1
			registry.ids[schema_id] = body["schema"]
			registry.subjects.setdefault(m[1], []).append((schema_id, body["schema"]))
			return self.reply(200, {"id": schema_id})
		if m := re.fullmatch(r"/subjects/([^/]+)/versions/latest", path):
			versions = registry.subjects[m[1]]
			schema_id, text = versions[-1]
			return self.reply(
				200, {"subject": m[1], "id": schema_id, "version": len(versions), "schema": text}
			)
		if m := re.fullmatch(r"/schemas/ids/(\d+)", path):  # what AvroDeserializer asks
			text = registry.ids.get(int(m[1]))
			if text is None:
				return self.reply(404, {"error_code": 40403, "message": "Schema not found"})
			return self.reply(200, {"schema": text})
		if path.startswith("/config/"):
			return self.reply(
				404, {"error_code": 40408, "message": "Subject does not have subject-level compatibility"}
			)
		if path == "/config":
			return self.reply(200, {"compatibilityLevel": "FULL_TRANSITIVE"})
		return self.reply(404, {"error_code": 404, "message": "Not found"})


@pytest.fixture
def registry():
	server = Registry()
	thread = threading.Thread(target=server.serve_forever, daemon=True)
	thread.start()
	try:
		yield server
	finally:
		server.shutdown()
		server.server_close()


def ids(registry: Registry, password: str = SECRET, **kwargs) -> framing.SchemaIds:
	# a fresh client per test: the URL differs, and `timeout` keeps failures quick
	conf = framing.registry_config(registry.url, KEY, password, timeout=5)
	conf["retries.wait.ms"] = 10
	conf["retries.max.wait.ms"] = 20
	return framing.SchemaIds.from_config(conf, **kwargs)


def test_a_new_subject_is_registered_with_the_api_key_and_then_cached(registry):
	first = ids(registry).schema_id(TOPIC, TOY_V1)
	assert registry.subjects[SUBJECT] == [(first, registry.ids[first])]
	assert json.loads(registry.ids[first]) == TOY_V1.schema
	assert {auth for _, _, auth in registry.requests} == {
		"Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
	}
	calls = len(registry.requests)
	assert ids(registry).schema_id(TOPIC, TOY_V1) == first, "per-process cache: no second round trip"
	assert len(registry.requests) == calls


def test_the_registrys_compatibility_verdict_refuses_a_new_version_before_registering_it(registry):
	ids(registry).schema_id(TOPIC, TOY_V1)
	registry.compatible = False
	with pytest.raises(framing.FramingError) as refused:
		ids(registry).schema_id(TOPIC, TOY_V2)
	assert not refused.value.retriable
	message = refused.value.message
	assert "schema registry refused ToyOrderEvent v2" in message and f"'{SUBJECT}'" in message
	assert "compatibility FULL_TRANSITIVE" in message and "requeue" in message
	assert len(registry.subjects[SUBJECT]) == 1, "nothing registered"
	assert [p for m, p, _ in registry.requests].count(f"/subjects/{SUBJECT}/versions") == 1  # only v1's


def test_a_409_at_register_is_a_refusal_with_the_registrys_message(registry):
	registry.refuse_register = True
	with pytest.raises(framing.FramingError) as refused:
		ids(registry).schema_id(TOPIC, TOY_V1)
	assert not refused.value.retriable
	assert "schema registry refused ToyOrderEvent v1" in refused.value.message
	assert "incompatible with an earlier schema" in refused.value.message
	assert "READER_FIELD_MISSING_DEFAULT_VALUE" in refused.value.message


@pytest.mark.parametrize("trouble", ["down", "wrong secret", "closed port"])
def test_an_unreachable_or_unauthorised_registry_is_retriable(registry, trouble):
	if trouble == "down":
		registry.down = True
		gate = ids(registry)
	elif trouble == "wrong secret":
		gate = ids(registry, password="wrong")
	else:
		conf = framing.registry_config(f"http://127.0.0.1:{free_port()}", timeout=2)
		gate = framing.SchemaIds.from_config(conf)
	with pytest.raises(framing.FramingError) as error:
		gate.schema_id(TOPIC, TOY_V1)
	assert error.value.retriable, error.value.message
	assert SECRET not in error.value.message


def test_a_decoder_reads_confluent_messages_through_the_same_registry(registry):
	from erpnext_streaming.consumer import Decoder

	schema_id = ids(registry).schema_id(TOPIC, TOY_V1)

	moment = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)
	record = {
		"event_id": str(uuid.uuid4()), "event_type": "submitted", "doctype": "Toy Order", "name": "T-1",
		"company": "Acme Corp", "site": "s", "docstatus": 1, "event_time": moment, "emitted_at": moment,
		"modified": moment, "schema_name": TOY_V1.name, "schema_version": 1, "voucher_type": None,
		"voucher_no": None, "voucher_detail_no": None,
		"document": {"name": "T-1", "docstatus": 1, "customer": None, "priority": 1, "qty": 2, "notes": "n",
			"grand_total": Decimal("1.500000000"), "items": []},
	}  # fmt: skip
	body = io.BytesIO()
	fastavro.schemaless_writer(body, TOY_V1.parsed, record)
	value = b"\x00" + schema_id.to_bytes(4, "big") + body.getvalue()
	decoder = Decoder(registry=framing.registry_config(registry.url, KEY, SECRET))
	assert decoder.decode(value, {}, topic=TOPIC).document["grand_total"] == Decimal("1.5")


def test_while_the_registry_is_down_the_other_rows_fail_at_once(registry):
	registry.down = True
	now = [0.0]
	gate = ids(registry, clock=lambda: now[0], unavailable_ttl=10)
	for _ in range(5):  # a batch of five rows of the version
		with pytest.raises(framing.FramingError) as error:
			gate.schema_id(TOPIC, TOY_V1)
		assert error.value.retriable
	asked = len(registry.requests)
	assert 1 <= asked <= 2, "one look-up (and the client's own retry), not one per row"
	registry.down = False
	now[0] = 11
	assert gate.schema_id(TOPIC, TOY_V1) >= 1, "asked again once the pause is over"


class HttpsRegistry(Registry):
	"""The same registry behind TLS, with a server certificate of a private CA."""

	def __init__(self, ca):
		import ssl
		import tempfile

		super().__init__()
		certificate, key = ca.issue_server_certificate(("127.0.0.1",))
		with tempfile.TemporaryDirectory() as directory:
			cert_file, key_file = Path(directory, "cert.pem"), Path(directory, "key.pem")
			cert_file.write_text(certificate)
			key_file.write_text(key)
			context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
			context.load_cert_chain(cert_file, key_file)
		self.socket = context.wrap_socket(self.socket, server_side=True)

	@property
	def url(self) -> str:
		return f"https://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def https_registry():
	from harness.tls import CertificateAuthority

	ca = CertificateAuthority.create("erpnext-streaming test registry CA")
	server = HttpsRegistry(ca)
	thread = threading.Thread(target=server.serve_forever, daemon=True)
	thread.start()
	try:
		yield server, ca
	finally:
		server.shutdown()
		server.server_close()


def test_a_registry_behind_a_private_ca_is_reached_with_the_ca_certificate_of_the_settings(https_registry):
	server, ca = https_registry
	conf = framing.registry_config(server.url, KEY, SECRET, ca_pem=ca.pem, timeout=5)
	assert Path(conf["ssl.ca.location"]).read_text() == ca.pem
	first = framing.SchemaIds.from_config(conf).schema_id(TOPIC, TOY_V1)
	assert server.subjects[SUBJECT] == [(first, server.ids[first])]


def test_without_that_ca_the_registry_certificate_is_refused_and_nothing_is_registered(https_registry):
	server, _ = https_registry
	conf = framing.registry_config(server.url, KEY, SECRET, timeout=3)
	conf["retries.wait.ms"], conf["retries.max.wait.ms"] = 10, 20
	with pytest.raises(framing.FramingError) as error:
		framing.SchemaIds.from_config(conf).schema_id(TOPIC, TOY_V1)
	assert "certificate" in error.value.message.lower(), error.value.message
	assert error.value.retriable and SECRET not in error.value.message
	assert server.subjects == {}
