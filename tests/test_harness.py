"""The harness gives real services: a Kafka-protocol broker, an RQ worker process, MariaDB."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import redis
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from harness import schema
from harness.worker import run_burst_worker
from rq import Queue

pytestmark = pytest.mark.integration


def test_the_tests_redis_is_their_own_unless_redis_url_names_one(redis_url):
	"""The run's keys live in a redis-server the harness started and stops, never in the
	developer's Redis on 6379, so nothing the run wrote is left behind."""
	if os.environ.get("REDIS_URL"):
		assert redis_url == os.environ["REDIS_URL"]
	else:
		assert redis.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"] != 6379


def test_broker_creates_topic_with_partitions_and_round_trips_a_message(kafka_bootstrap):
	topic = f"harness-{uuid.uuid4().hex[:8]}"
	admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
	admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(15)
	assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == 4

	reports = []
	producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all"})
	producer.produce(topic, key=b"ACME", value=b"hello", headers=[("ce_id", b"e-1")], partition=2,
		on_delivery=lambda err, msg: reports.append((err, msg.partition(), msg.offset())))  # fmt: skip
	assert producer.flush(15) == 0
	assert reports == [(None, 2, 0)]

	consumer = Consumer(
		{"bootstrap.servers": kafka_bootstrap, "group.id": topic, "enable.auto.commit": False}
	)
	consumer.assign([TopicPartition(topic, 2, 0)])
	message = consumer.poll(15)
	consumer.close()
	assert message is not None and message.error() is None
	assert (message.key(), message.value(), message.headers()) == (b"ACME", b"hello", [("ce_id", b"e-1")])


def test_rq_worker_process_executes_a_job_from_redis(redis_url):
	queue_name = f"harness-{uuid.uuid4().hex[:8]}"
	key = f"{queue_name}:result"
	client = redis.Redis.from_url(redis_url)
	job = Queue(queue_name, connection=client).enqueue("harness.jobs.record_pid", redis_url, key, "ran")

	assert run_burst_worker(redis_url, [queue_name]) == 0

	result = client.hgetall(key)
	client.delete(key)
	assert result[b"value"] == b"ran"
	assert int(result[b"pid"]) != os.getpid()  # it ran in the worker's work horse, not here
	job.refresh()
	assert job.get_status() == "finished"


def test_event_log_table_has_the_columns_and_indexes_its_json_declares(mariadb):
	import pymysql

	doctype = json.loads(
		(schema.DOCTYPE_DIR / "streaming_event_log" / "streaming_event_log.json").read_text()
	)
	params = {k: v for k, v in mariadb.items() if k != "tables"}
	conn = pymysql.connect(**params)
	with conn.cursor() as cur:
		cur.execute(
			"SELECT column_name, column_type FROM information_schema.columns "
			"WHERE table_schema = %s AND table_name = 'tabStreaming Event Log'",
			(params["database"],),
		)
		columns = dict(cur.fetchall())
		cur.execute("SHOW INDEX FROM `tabStreaming Event Log`")
		indexed = {row[4] for row in cur.fetchall()}
		cur.execute(
			"SELECT count(*) FROM information_schema.tables WHERE table_schema = %s "
			"AND table_name = 'streaming_event_log_id_seq' AND table_type = 'SEQUENCE'",
			(params["database"],),
		)
		(sequences,) = cur.fetchone()
	conn.close()

	expected_sql_type = {  # Frappe v15 MariaDB type_map, written out independently
		"Data": "varchar(140)", "Select": "varchar(140)", "Link": "varchar(140)",
		"Dynamic Link": "varchar(140)", "Int": "int(11)", "Long Int": "bigint(20)",
		"Datetime": "datetime(6)", "Small Text": "text", "Long Text": "longtext",
	}  # fmt: skip
	data_fields = [f for f in doctype["fields"] if f["fieldtype"] not in ("Section Break", "Column Break")]
	assert data_fields, "the Event Log declares fields"
	for field in data_fields:
		assert columns[field["fieldname"]] == expected_sql_type[field["fieldtype"]], field["fieldname"]
	for field in data_fields:
		if field.get("search_index"):
			assert field["fieldname"] in indexed, f"{field['fieldname']} is declared search_index"
	assert {"status", "reference_name", "next_attempt_at", "event_id"} <= indexed
	assert columns["name"] == "bigint(20)"  # autoname: autoincrement
	assert sequences == 1
	for standard in ("creation", "modified", "modified_by", "owner", "docstatus", "idx"):
		assert standard in columns
