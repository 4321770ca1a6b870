"""A wrong SASL password on Apache Kafka: the app's events are held (retried with backoff,
never Dead), health says why and names each company, and once the password is corrected in
Streaming Settings everything arrives in order.

librdkafka reports the refusal only to the error callback; the messages time out. The
producer blames the timeouts on the refusal (`policy.blame`), which holds them
(`policy.REFUSED_CODES`). The broker: tests/harness/tls.py `secure_broker` with SASL users;
the app speaks SCRAM-SHA-512 on its SASL_PLAINTEXT listener, the test's admin client uses
the node's own PLAINTEXT listener. The drainer runs in a real forking `rq worker`.

How the correction reaches the drainer: saving Streaming Settings tells the running
drainer (the controller's after-commit, `lifecycle.settings_saved`), which ends its slice at
the next batch boundary; its successor reads the corrected password. Within seconds, not
after the drainer's idle exit or its slice.
"""

from __future__ import annotations

from datetime import datetime

import frappe
import pytest
from delivery_support import (
	COMPANIES,
	all_delivered,
	assert_company_order,
	by_event_id,
	configure,
	consume,
	create_topics,
	report_duplicates,
	rows,
	sweeping,
	transactions,
	wait_for,
)
from harness.tls import CertificateAuthority, secure_broker

from erpnext_streaming.constants import Status
from erpnext_streaming.delivery import lifecycle
from erpnext_streaming.delivery.jobs import queue_redis
from erpnext_streaming.operations import site as site_ops
from erpnext_streaming.operations import status

pytestmark = pytest.mark.integration

USER, PASSWORD, WRONG = "erp-streaming", "the-right-one-7Qz", "a-wrong-one-3Kx"
MECHANISM = "SCRAM-SHA-512"


@pytest.fixture(scope="module")
def broker():
	with secure_broker(CertificateAuthority.create("refused CA"), True, {USER: PASSWORD}) as b:
		yield b


def settings(broker, password: str) -> None:
	configure(
		broker.plain_bootstrap, "erpnext.refused-dead-letters", max_attempts=3, backoff_base_seconds=1,
		backoff_cap_seconds=2,
		settings={"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": MECHANISM,
			"sasl_username": USER, "sasl_password": password},
	)  # fmt: skip
	lifecycle.settings_saved(queue_redis(timeout=5), frappe.local.site)  # the controller's on_update


def test_a_wrong_password_holds_every_company_until_it_is_corrected(site, broker, workers):
	topic = "erpnext.refused-test"
	create_topics(broker.cluster.bootstrap, (topic, 6), ("erpnext.refused-dead-letters", 1))
	settings(broker, WRONG)
	workers.start(1)
	written = transactions(topic, 0, 9)

	def held_past_max_attempts() -> bool:
		failed = [r for r in rows() if r.status == Status.FAILED]
		return {r.company for r in failed} == set(COMPANIES) and all(r.attempts > 3 for r in failed)

	wait_for(held_past_max_attempts, 120, "held while the password is wrong")
	log = rows()
	assert {r.status for r in log} == {Status.FAILED, Status.QUEUED}, "held, never Dead"
	failed = [r for r in log if r.status == Status.FAILED]
	assert all("_AUTHENTICATION" in r.last_error for r in failed), {r.last_error for r in failed}
	assert all("SASL Username / Password" in r.last_error for r in failed)
	reasons = status.assess(status.collect(frappe.db, datetime.now()))[1]
	held = [r for r in reasons if "held until fixed on the cluster" in r and "_AUTHENTICATION" in r]
	assert {c for c in COMPANIES if any(c in r for r in held)} == set(COMPANIES), reasons
	health = site_ops.health(check_broker=True)  # the endpoint: Kafka refuses this client
	assert health["status"] == "down" and "invalid credentials" in health["broker"]["error"], health
	assert WRONG not in str(health) and WRONG not in str(log)
	print(
		f"\nwrong password: {len(failed)} Failed (attempts {sorted(r.attempts for r in failed)}), "
		f"{len(log) - len(failed)} Queued behind them, 0 Dead; reason: {failed[0].last_error[:150]}"
	)

	settings(broker, PASSWORD)
	written += transactions(topic, 9, 6)
	wait_for(all_delivered, 20, "delivered within seconds of the corrected password's save", interval=0.5)
	assert {r.status for r in rows()} == {Status.SENT}
	got = consume(broker.cluster.bootstrap, topic, expect=len(written), settle=2)
	assert set(by_event_id(got)) == {e.event_id for e in written}, "nothing lost"
	assert not report_duplicates(got, {r.event_id: r for r in rows()})
	assert_company_order(got)
	assert not status.held(frappe.db), "a delivery clears the hold"
