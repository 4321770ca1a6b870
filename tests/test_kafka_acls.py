"""Authorization on Apache Kafka (KRaft's StandardAuthorizer): a principal without Write on
the topic is held, never Dead, health says why, and once an admin grants the ACL the
company's events arrive in order.

The broker (tests/harness/kafka.py): one KRaft node with `StandardAuthorizer`, a
SASL_PLAINTEXT listener with two SCRAM-SHA-512 users: `admin` (a super user, who creates
topics and ACLs) and the app's user, who at first may do nothing. The drainer runs in a
real forking `rq worker` with the app's own SASL settings.
"""

from __future__ import annotations

from datetime import datetime

import frappe
import pytest
from confluent_kafka.admin import (
	AclBinding,
	AclOperation,
	AclPermissionType,
	AdminClient,
	NewTopic,
	ResourcePatternType,
	ResourceType,
)
from delivery_support import (
	COMPANIES,
	all_delivered,
	assert_company_order,
	by_event_id,
	configure,
	consume,
	report_duplicates,
	rows,
	sweeping,
	transactions,
	wait_for,
)
from harness.kafka import start_kafka
from harness.services import free_port

from erpnext_streaming.constants import Status
from erpnext_streaming.operations import status

pytestmark = pytest.mark.integration

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
APP_USER, APP_PASSWORD = "erp-streaming", "app-secret"
MECHANISM = "SCRAM-SHA-512"


@pytest.fixture(scope="module")
def secured():
	"""(cluster, the SASL listener's bootstrap) of an authorizing node."""

	ports: dict[int, int] = {}

	def node_properties(node) -> dict[str, str]:
		ports[node.node_id] = free_port()
		names = {"PLAINTEXT": node.port, "CONTROLLER": node.controller_port, "SASL": ports[node.node_id]}
		addresses = [f"{name}://127.0.0.1:{port}" for name, port in names.items()]
		return {
			"listeners": ",".join(addresses),
			"advertised.listeners": ",".join(a for a in addresses if not a.startswith("CONTROLLER")),
			"listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL:SASL_PLAINTEXT",
			"listener.name.sasl.sasl.enabled.mechanisms": MECHANISM,
			"listener.name.sasl.scram-sha-512.sasl.jaas.config": (
				"org.apache.kafka.common.security.scram.ScramLoginModule required;"
			),
			"authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
			# the brokers' and the controller's own PLAINTEXT listeners speak as ANONYMOUS
			"super.users": f"User:ANONYMOUS;User:{ADMIN}",
			"auto.create.topics.enable": "false",
		}

	users = [
		arg
		for user, password in ((ADMIN, ADMIN_PASSWORD), (APP_USER, APP_PASSWORD))
		for arg in ("--add-scram", f'{MECHANISM}=[name={user},password="{password}"]')
	]
	cluster = start_kafka(1, node_properties=node_properties, format_args=users)
	try:
		yield cluster, f"127.0.0.1:{ports[1]}"
	finally:
		cluster.stop()


def client(bootstrap: str, user: str, password: str) -> dict:
	return {
		"bootstrap.servers": bootstrap,
		"security.protocol": "SASL_PLAINTEXT",
		"sasl.mechanism": MECHANISM,
		"sasl.username": user,
		"sasl.password": password,
	}


def grant_write(admin: AdminClient, topic: str) -> None:
	bindings = [
		AclBinding(
			ResourceType.TOPIC,
			topic,
			ResourcePatternType.LITERAL,
			f"User:{APP_USER}",
			"*",
			operation,
			AclPermissionType.ALLOW,
		)
		for operation in (AclOperation.WRITE, AclOperation.DESCRIBE)
	]
	for future in admin.create_acls(bindings).values():
		future.result(15)


def test_a_topic_the_app_may_not_write_holds_its_company_until_the_acl_is_granted(site, secured, workers):
	_, sasl_bootstrap = secured
	admin = AdminClient(client(sasl_bootstrap, ADMIN, ADMIN_PASSWORD))
	topic, dead_letters = "erpnext.acl-test", "erpnext.acl-dead-letters"
	futures = admin.create_topics(
		[NewTopic(t, num_partitions=6, replication_factor=1) for t in (topic, dead_letters)]
	)
	for future in futures.values():
		future.result(15)
	grant_write(admin, dead_letters)
	configure(
		sasl_bootstrap, dead_letters, max_attempts=3, backoff_base_seconds=1, backoff_cap_seconds=2,
		settings={"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM,
			"sasl_username": APP_USER, "sasl_password": APP_PASSWORD},
	)  # fmt: skip
	workers.start(1)
	written = transactions(topic, 0, 9)

	def held_past_max_attempts() -> bool:
		"""each company's first event retried past Max Attempts (3) while the ACL is missing,
		its later events waiting behind it in order"""
		failed = [r for r in rows() if r.status == Status.FAILED]
		return {r.company for r in failed} == set(COMPANIES) and all(r.attempts > 3 for r in failed)

	wait_for(held_past_max_attempts, 90, "held while the ACL is missing")
	log = rows()
	assert {r.status for r in log} == {Status.FAILED, Status.QUEUED}, "held, never Dead"
	failed = [r for r in log if r.status == Status.FAILED]
	assert all("TOPIC_AUTHORIZATION_FAILED" in r.last_error for r in failed), {r.last_error for r in failed}
	reasons = status.assess(status.collect(frappe.db, datetime.now()))[1]
	held = [r for r in reasons if "held until fixed on the cluster" in r]
	assert {company for company in COMPANIES if any(company in r for r in held)} == set(COMPANIES), reasons
	assert all("TOPIC_AUTHORIZATION_FAILED" in r and f"topic {topic}" in r for r in held), held
	print(
		f"\nwhile the ACL is missing: {len(failed)} Failed (attempts {[r.attempts for r in failed]}), "
		f"{len(log) - len(failed)} Queued behind them, 0 Dead"
	)

	grant_write(admin, topic)
	written += transactions(topic, 9, 6)
	wait_for(sweeping(all_delivered), 90, "delivered once the ACL is granted", interval=1)
	assert {r.status for r in rows()} == {Status.SENT}
	got = consume_as_admin(sasl_bootstrap, topic, len(written))
	assert set(by_event_id(got)) == {e.event_id for e in written}, "nothing lost"
	assert not report_duplicates(got, {r.event_id: r for r in rows()})
	assert_company_order(got)
	assert not status.held(frappe.db), "a delivery clears the hold"


def consume_as_admin(bootstrap: str, topic: str, expect: int):
	return consume(bootstrap, topic, expect=expect, settle=2, config=client(bootstrap, ADMIN, ADMIN_PASSWORD))


def test_create_topics_without_the_create_acl_says_which_acl_is_missing(bench, secured):
	_, sasl_bootstrap = secured
	topic = "erpnext.acl-create"
	row = {"document_type": "GL Entry", "enabled": 1, "on_submit": 1, "topic": topic}
	configure(
		sasl_bootstrap, "erpnext.acl-create-dlq",
		settings={"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM,
			"sasl_username": APP_USER, "sasl_password": APP_PASSWORD, "event_catalog": [row]},
	)  # fmt: skip
	for dry_run in (["--dry-run"], []):
		result = bench("create-topics", *dry_run)
		print(f"\n$ bench --site SITE streaming create-topics {' '.join(dry_run)}\n{result.output}")
		assert result.exit_code == 1, result.output
		assert f"Could not create {topic}: TOPIC_AUTHORIZATION_FAILED" in result.stderr
		assert f"User:{APP_USER} may not create {topic}; grant it the ACL Create on topic {topic}" in (
			result.stderr
		)
	admin = AdminClient(client(sasl_bootstrap, ADMIN, ADMIN_PASSWORD))
	assert topic not in admin.list_topics(timeout=10).topics
