"""The topic catalog: every topic taskplane uses, by role, with its partitions and
configs; and an idempotent ``ensure`` that creates what is missing and reports drift.

Roles are stable names used in code (``Output.topic``); physical names carry the
configurable prefix (``<prefix>.<role>``). Topics that a processor reads together are
co-partitioned (same partition count): a run's commands, events, changelog and
inbox records land on the same partition index.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from taskplane.streams.exceptions import KafkaIOError, StreamsError


class PartitionChangeRefused(StreamsError):
    """The run-keyed topics exist with another partition count than asked for."""


# Co-partitioned by run id: a run's commands, events, state and replies share one index.
RUN_KEYED = ("commands", "events", "orchestrator-changelog", "work", "inbox", "deadletter", "runs")
COMPACT = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "600000"}
WEEK_MS = str(7 * 24 * 3600 * 1000)


@dataclass(frozen=True, slots=True)
class TopicSpec:
    role: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)
    key: str = ""
    what: str = ""


def catalog(run_partitions: int = 4, tool_partitions: int = 2) -> tuple[TopicSpec, ...]:
    """All topics. ``run_partitions`` bounds orchestrator parallelism (one pod per
    partition at most); ``tool_partitions`` bounds the breaker processor's."""
    retained = {"retention.ms": WEEK_MS}
    return (
        TopicSpec("commands", run_partitions, retained, "run_id", "requests to the orchestrator"),
        TopicSpec("events", run_partitions, {"retention.ms": "-1"}, "run_id", "facts, orchestrator only"),
        TopicSpec("orchestrator-changelog", run_partitions, COMPACT, "run_id", "run state snapshots"),
        TopicSpec("work", run_partitions, retained, "run_id/task", "ready tasks offered to workers"),
        TopicSpec("inbox", run_partitions, retained, "worker_id", "lease grants and claim rejections"),
        TopicSpec("deadletter", run_partitions, {"retention.ms": "-1"}, "run_id", "dead-lettered tasks"),
        TopicSpec("runs", run_partitions, COMPACT, "run_id", "the index of runs: each run's latest summary"),
        TopicSpec("tool-outcomes", tool_partitions, retained, "tool", "tool call results for breakers"),
        TopicSpec("breaker-events", tool_partitions, retained, "tool", "breaker transitions"),
        TopicSpec("breakers", tool_partitions, COMPACT, "tool", "current breaker state per tool"),
        TopicSpec("dispatch", tool_partitions, retained, "system", "offers and notices for the dispatcher"),
        TopicSpec("dispatch-events", tool_partitions, retained, "system", "dispatcher decisions"),
        TopicSpec("dispatcher-changelog", tool_partitions, COMPACT, "system", "dispatcher state per system"),
        TopicSpec("systems", 1, COMPACT, "system name", "AgentSystem definitions"),
        TopicSpec("schedules", 1, retained, "system name", "requests to the cron processor, and its Ticks"),
        TopicSpec("schedule-events", 1, retained, "system name", "cron facts: slots fired and skipped"),
        TopicSpec("cron-changelog", 1, COMPACT, "system name", "cron state snapshots"),
        TopicSpec("poison", 1, retained, "-", "records that could not be decoded or validated"),
    )


def replication_for(brokers: int) -> tuple[int, int]:
    """(replication factor, min in-sync replicas) for a cluster of ``brokers``: the
    Strimzi default 3 / 2 from three brokers on (a broker may fail, or restart in a
    rolling upgrade, and an acknowledged write still sits on two); fewer keep 1 / 1."""
    replicas = max(1, min(3, brokers))
    return replicas, max(1, replicas - 1)


def catalog_spec(role: str) -> TopicSpec:
    """The catalog's spec of ``role`` (default partition counts)."""
    for spec in catalog():
        if spec.role == role:
            return spec
    raise KeyError(role)


@dataclass(frozen=True, slots=True)
class Topics:
    """Physical names for roles under one prefix. One property per catalog role, so a
    misspelt role is an AttributeError (and a mypy error), never a new topic name;
    ``name(role)`` serves roles outside the catalog (a test decider's own topics)."""

    prefix: str = "taskplane"

    def name(self, role: str) -> str:
        return f"{self.prefix}.{role}" if self.prefix else role

    @property
    def commands(self) -> str:
        return self.name("commands")

    @property
    def events(self) -> str:
        return self.name("events")

    @property
    def orchestrator_changelog(self) -> str:
        return self.name("orchestrator-changelog")

    @property
    def work(self) -> str:
        return self.name("work")

    @property
    def inbox(self) -> str:
        return self.name("inbox")

    @property
    def deadletter(self) -> str:
        return self.name("deadletter")

    @property
    def runs(self) -> str:
        return self.name("runs")

    @property
    def tool_outcomes(self) -> str:
        return self.name("tool-outcomes")

    @property
    def breaker_events(self) -> str:
        return self.name("breaker-events")

    @property
    def breakers(self) -> str:
        return self.name("breakers")

    @property
    def dispatch(self) -> str:
        return self.name("dispatch")

    @property
    def dispatch_events(self) -> str:
        return self.name("dispatch-events")

    @property
    def dispatcher_changelog(self) -> str:
        return self.name("dispatcher-changelog")

    @property
    def systems(self) -> str:
        return self.name("systems")

    @property
    def schedules(self) -> str:
        return self.name("schedules")

    @property
    def schedule_events(self) -> str:
        return self.name("schedule-events")

    @property
    def cron_changelog(self) -> str:
        return self.name("cron-changelog")

    @property
    def poison(self) -> str:
        return self.name("poison")


@dataclass(frozen=True, slots=True)
class Drift:
    topic: str
    what: str


@dataclass(slots=True)
class EnsureReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)


def ensure_topics(
    admin: AdminClient,
    topics: Topics,
    specs: Iterable[TopicSpec],
    timeout_s: float = 30.0,
) -> EnsureReport:
    """Create missing topics; compare existing ones with the catalog. Idempotent."""
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as error:  # the broker away: one line for the CLI, not a traceback
        raise KafkaIOError.wrap(error, "listing the topics") from None
    replicas, min_isr = replication_for(len(metadata.brokers))
    # Replication is the cluster's: the same catalog serves one dev broker and three.
    specs = [replace(s, config={**s.config, "min.insync.replicas": str(min_isr)}) for s in specs]
    report = EnsureReport()
    refuse_partition_change(metadata.topics, topics, specs)
    missing = [s for s in specs if topics.name(s.role) not in metadata.topics]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(topics.name(s.role), num_partitions=s.partitions, replication_factor=replicas,
                         config=dict(s.config))
                for s in missing
            ],
            operation_timeout=timeout_s,
        )
        for name, future in futures.items():
            try:
                future.result()
                report.created.append(name)
            except KafkaException as error:
                if error.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: a racing creator
                    raise KafkaIOError.wrap(error, f"cannot create {name}") from error
                report.existing.append(name)
    present = [s for s in specs if s not in missing]
    for spec in present:
        name = topics.name(spec.role)
        report.existing.append(name)
        partitions = len(metadata.topics[name].partitions)
        if partitions != spec.partitions:
            report.drift.append(Drift(name, f"partitions {partitions}, catalog says {spec.partitions}"))
        replicated = min((len(p.replicas) for p in metadata.topics[name].partitions.values()), default=replicas)
        if replicated < replicas:
            report.drift.append(Drift(name, f"replication factor {replicated}, the cluster's is {replicas}"))
    if present:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, topics.name(s.role)) for s in present]
        for resource, future in admin.describe_configs(resources).items():
            actual = {k: v.value for k, v in future.result().items()}
            spec = next(s for s in present if topics.name(s.role) == resource.name)
            for key, wanted in spec.config.items():
                if actual.get(key) != wanted:
                    report.drift.append(Drift(resource.name, f"{key}={actual.get(key)}, catalog says {wanted}"))
    return report


def refuse_partition_change(existing: Mapping[str, object], topics: Topics, specs: Iterable[TopicSpec]) -> None:
    """Raise PartitionChangeRefused when a run-keyed topic exists with a partition count
    other than the catalog's. A run lives on partition hash(run_id) mod N of every
    run-keyed topic; with another N its next command lands where its state is not, and
    the run is decided as unknown. Never split a run's state silently: docs/scaling.md."""
    for spec in specs:
        name = topics.name(spec.role)
        if spec.role not in RUN_KEYED or name not in existing:
            continue
        partitions = len(existing[name].partitions)  # type: ignore[attr-defined]
        if partitions != spec.partitions:
            raise PartitionChangeRefused(
                f"{name} has {partitions} partitions, asked for {spec.partitions}: refused. A run's commands, "
                f"events and state sit on partition hash(run_id) mod {partitions}; with {spec.partitions} the runs "
                "in flight would be decided where their state is not. Drain the running runs, or use a new "
                "--prefix for the new count (docs/scaling.md)"
            )
