"""The topics the app writes: which it needs, how we recommend creating them, and creating them.

The recommendation and its reasons are in docs/operations.md, "Topics": 6 partitions for an
event topic (keys are companies, so partitions bound consumer parallelism only), 1 for the
dead-letter topic, replication min(3, brokers), min.insync.replicas min(2, replication),
because `acks=all` waits only for the in-sync replicas. Existing topics are only described,
never altered: adding partitions would move keys and break per-company order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from erpnext_streaming import constants as c
from erpnext_streaming.cluster import Quiet, describe_cluster
from erpnext_streaming.settings import StreamingConfig

DEFAULT_PARTITIONS = 6
DEAD_LETTER_PARTITIONS = 1
MAX_REPLICATION_FACTOR = 3
MAX_MIN_INSYNC_REPLICAS = 2
# below this many brokers a replication factor or min.insync.replicas of 1 is all there is
REPLICATED_CLUSTER_BROKERS = 3
DEFAULT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Recommendation:
	partitions: int
	replication_factor: int
	min_insync_replicas: int

	def text(self) -> str:
		isr = "?" if self.min_insync_replicas is None else self.min_insync_replicas  # not readable
		return (
			f"{self.partitions} partition{'s' if self.partitions != 1 else ''}, "
			f"replication factor {self.replication_factor}, min.insync.replicas {isr}"
		)


def recommend(brokers: int, dead_letter: bool = False) -> Recommendation:
	"""The settings we recommend for a topic of a cluster of `brokers` brokers."""
	replication = max(1, min(MAX_REPLICATION_FACTOR, brokers))
	return Recommendation(
		partitions=DEAD_LETTER_PARTITIONS if dead_letter else DEFAULT_PARTITIONS,
		replication_factor=replication,
		min_insync_replicas=min(MAX_MIN_INSYNC_REPLICAS, replication),
	)


def needed(config: StreamingConfig) -> list[tuple[str, bool]]:
	"""(topic, is the dead-letter topic) for every topic the app writes, sorted: each enabled
	catalog row's topic (its override, else the default) and the dead-letter topic."""
	topics = {
		row.topic or c.default_topic(config.topic_prefix, row.document_type)
		for row in config.catalog
		if row.enabled and row.document_type
	}
	if config.dead_letter_topic:
		topics.add(config.dead_letter_topic)
	return [(topic, topic == config.dead_letter_topic) for topic in sorted(topics)]


@dataclass(frozen=True)
class TopicState:
	"""One needed topic as the cluster has it (or not), beside our recommendation."""

	topic: str
	dead_letter: bool
	exists: bool
	recommended: Recommendation
	partitions: int | None = None
	replication_factor: int | None = None
	min_insync_replicas: int | None = None  # None: not readable (DescribeConfigs refused)
	warnings: tuple[str, ...] = field(default=())

	def as_dict(self) -> dict[str, Any]:
		return {**asdict(self), "warnings": list(self.warnings)}


def assess(
	topics: Sequence[tuple[str, bool]], layout: dict[str, dict[str, Any]], brokers: int
) -> list[TopicState]:
	"""`layout`: `cluster.describe_cluster(..., topics=...)["layout"]` (existing topics only)."""
	states = []
	for topic, dead_letter in topics:
		described = layout.get(topic)
		recommended = recommend(brokers, dead_letter)
		if described is None:
			states.append(TopicState(topic, dead_letter, False, recommended))
			continue
		layout_of = {
			key: described.get(key) for key in ("partitions", "replication_factor", "min_insync_replicas")
		}
		state = TopicState(topic, dead_letter, True, recommended, **layout_of)
		states.append(replace(state, warnings=tuple(_warnings(state, brokers))))
	return states


def _warnings(state: TopicState, brokers: int) -> list[str]:
	found = []
	rf, isr = state.replication_factor, state.min_insync_replicas
	if rf is not None and isr is not None and isr > rf:
		found.append(
			f"min.insync.replicas {isr} is above the replication factor {rf}: the broker refuses "
			"every write with acks=all (NOT_ENOUGH_REPLICAS)"
		)
	if brokers < REPLICATED_CLUSTER_BROKERS:
		return found
	if state.replication_factor is not None and state.replication_factor < 2:
		found.append(
			f"replication factor {state.replication_factor} on a cluster of {brokers} brokers: "
			"one broker lost loses its events (recreate it with "
			f"replication factor {state.recommended.replication_factor})"
		)
	if state.min_insync_replicas is not None and state.min_insync_replicas < 2:
		found.append(
			f"min.insync.replicas {state.min_insync_replicas}: an acknowledged write may sit on one "
			f"broker only (kafka-configs --alter --entity-type topics --entity-name {state.topic} "
			f"--add-config min.insync.replicas={state.recommended.min_insync_replicas})"
		)
	return found


@dataclass(frozen=True)
class Created:
	topic: str
	recommended: Recommendation
	error: str | None = None  # None: created (or, validating only, would be)
	existed: bool = False  # someone created it meanwhile: left as is, not a failure


def create_missing(
	conf: dict[str, str],
	states: Sequence[TopicState],
	validate_only: bool = False,
	timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> list[Created]:
	"""Create every missing topic of `states` with its recommendation, through the
	AdminClient; existing topics are not touched. `validate_only`: the broker checks the
	request (names, replication, authorization) and creates nothing."""
	from confluent_kafka import KafkaError, KafkaException
	from confluent_kafka.admin import AdminClient, NewTopic

	missing = [s for s in states if not s.exists]
	if not missing:
		return []
	client = AdminClient({**conf, "logger": Quiet()})
	futures = client.create_topics(
		[
			NewTopic(
				s.topic,
				num_partitions=s.recommended.partitions,
				replication_factor=s.recommended.replication_factor,
				config={"min.insync.replicas": str(s.recommended.min_insync_replicas)},
			)
			for s in missing
		],
		operation_timeout=timeout,
		request_timeout=timeout,
		validate_only=validate_only,
	)
	results = []
	for state in missing:
		try:
			futures[state.topic].result(timeout + 5)
			results.append(Created(state.topic, state.recommended))
		except KafkaException as e:
			error = e.args[0] if e.args else e
			existed = getattr(error, "code", lambda: None)() == KafkaError.TOPIC_ALREADY_EXISTS
			explained = explain_error(error, state.topic, _principal(conf))
			results.append(Created(state.topic, state.recommended, explained, existed))
	return results


def _principal(conf: dict[str, str]) -> str:
	"""The ACL principal of a SASL user; other principals (a TLS certificate's DN, a
	custom principal builder) are the cluster's to name."""
	user = conf.get("sasl.username") if conf.get("security.protocol", "").startswith("SASL") else None
	return f"User:{user}" if user else "User:NAME"


def explain_error(error: Any, topic: str, principal: str = "User:NAME") -> str:
	"""A create-topics failure in words, with what to do; `error` is a KafkaError."""
	from confluent_kafka import KafkaError

	code = error.code() if hasattr(error, "code") else None
	text = f"{error.name()}: {error.str().rstrip('.')}" if hasattr(error, "name") else str(error)
	if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
		return (
			f"{text}: {principal} may not create {topic}; grant it the ACL Create on topic "
			f"{topic} (or Create on the cluster), e.g. kafka-acls --add --allow-principal "
			f"{principal} --operation Create --topic {topic}"
		)
	if code == KafkaError.CLUSTER_AUTHORIZATION_FAILED:
		return (
			f"{text}: {principal} may not create topics; grant it the ACL Create on topic {topic} "
			f"(or Create on the cluster: kafka-acls --add --allow-principal {principal} "
			"--operation Create --cluster)"
		)
	if code == KafkaError.TOPIC_ALREADY_EXISTS:
		return f"{text} (created by someone else meanwhile; left as is)"
	if code in (
		KafkaError.INVALID_REPLICATION_FACTOR,
		KafkaError.POLICY_VIOLATION,
		KafkaError.INVALID_CONFIG,
	):
		return f"{text}: the cluster refuses these settings; create {topic} with Kafka's tools"
	return text


# -- the cluster's answer and the command's -------------------------------------------------


def survey(
	config: StreamingConfig, conf: dict[str, str], timeout: float = 10.0
) -> tuple[dict[str, Any], list[TopicState]]:
	"""`describe_cluster` plus `catalog_topics`: for each topic the app writes, whether it
	exists, its layout or our recommendation, and warnings (`TopicState.as_dict`); and the
	states themselves."""
	wanted = needed(config)
	answer = describe_cluster(conf, timeout=timeout, topics=[t for t, _ in wanted])
	if not answer["ok"]:
		return answer, []
	states = assess(wanted, answer.pop("layout", {}), len(answer["brokers"]))
	answer["catalog_topics"] = [state.as_dict() for state in states]
	return answer, states


def create(
	config: StreamingConfig,
	conf: dict[str, str],
	dry_run: bool = False,
	timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> dict[str, Any]:
	"""`survey`, then `create_missing` (validate only when `dry_run`): the answer gains
	`created` (topic, recommendation, error, existed) for each topic that was missing."""
	answer, states = survey(config, conf, timeout)
	if answer["ok"]:
		answer["created"] = [
			{**asdict(result), "recommended": result.recommended.text()}
			for result in create_missing(conf, states, validate_only=dry_run, timeout=timeout)
		]
	return answer
