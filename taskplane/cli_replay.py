"""Offset replay and rebuilds.

    taskplane replay --group taskplane.orchestrator --topic taskplane.commands --to-time 2025-01-01T10:00:00Z
    taskplane rebuild projections [--from-beginning | --from-time ISO]
    taskplane rebuild state [--write]

``replay`` moves a stopped consumer group's committed offsets; its consumers then
reprocess from there (the orchestrator rejects or re-decides identically what it
already applied; the projector ignores Kafka offsets: use ``rebuild projections``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import typer
from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from taskplane.cli_runs import JsonOption, database_url, fail, print_json, table
from taskplane.streams.log_reader import read_to_end

rebuild_app = typer.Typer(help="Rebuild derived state from the log.", no_args_is_help=True)


# ---------------------------------------------------------------- offset helpers


def _reader(kafka_config: dict[str, Any]) -> Consumer:
    return Consumer({**kafka_config, "group.id": "taskplane-offset-tools", "enable.auto.commit": False})


def partitions_of(kafka_config: dict[str, Any], topic: str) -> list[int]:
    metadata = AdminClient(kafka_config).list_topics(topic, timeout=30).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        return []
    return sorted(metadata.partitions)


def watermarks(kafka_config: dict[str, Any], topic: str) -> dict[int, tuple[int, int]]:
    reader = _reader(kafka_config)
    try:
        return {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
                for p in partitions_of(kafka_config, topic)}
    finally:
        reader.close()


def committed_offsets(kafka_config: dict[str, Any], group: str, topic: str) -> dict[int, int]:
    """The group's committed offset per partition of ``topic`` (absent: none committed)."""
    partitions = [TopicPartition(topic, p) for p in partitions_of(kafka_config, topic)]
    if not partitions:
        return {}
    admin = AdminClient(kafka_config)  # must outlive the future: a freed client never answers
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, partitions)], request_timeout=5)
    result = futures[group].result(timeout=8)
    return {tp.partition: tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def live_members(kafka_config: dict[str, Any], group: str) -> list[str]:
    admin = AdminClient(kafka_config)  # must outlive the future
    description = admin.describe_consumer_groups([group], request_timeout=5)[group].result(timeout=8)
    return [f"{m.client_id}@{m.host}" for m in description.members]


def parse_time(value: str, option: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option}: not an ISO 8601 time: {value!r} (e.g. 2025-01-31T10:00:00Z)")
    if parsed.tzinfo is None:
        fail(f"{option}: give a time zone (e.g. 2025-01-31T10:00:00Z), got {value!r}")
    return int(parsed.timestamp() * 1000)


# ---------------------------------------------------------------- replay


def replay(
    group: Annotated[str, typer.Option(help="Consumer group to move.")],
    topic: Annotated[str, typer.Option(help="Topic whose offsets move (full name).")],
    to_offset: Annotated[int | None, typer.Option(help="Same offset on every partition.")] = None,
    to_time: Annotated[str | None, typer.Option(help="First record at or after this ISO time.")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Earliest retained offset.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print old and new offsets only.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Even while the group has live members.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Reset a consumer group's offsets on TOPIC, printing old and new per partition."""
    if sum((to_offset is not None, to_time is not None, from_beginning)) != 1:
        fail("give exactly one of --to-offset N, --to-time ISO, --from-beginning")
    if to_offset is not None and to_offset < 0:
        fail("--to-offset: must be >= 0")
    at_ms = parse_time(to_time, "--to-time") if to_time is not None else None
    from taskplane.cli_processors import kafka_endpoints

    kafka, _topics = kafka_endpoints()
    marks = watermarks(kafka, topic)
    if not marks:
        fail(f"--topic: no topic named {topic!r}")
    try:
        members = live_members(kafka, group)
        old = committed_offsets(kafka, group, topic)
    except KafkaException as error:
        fail(f"--group: cannot describe {group!r}: {error.args[0].str()}")
    new: dict[int, int] = {}
    if at_ms is not None:
        reader = _reader(kafka)
        try:
            found = reader.offsets_for_times([TopicPartition(topic, p, at_ms) for p in marks], timeout=30)
        finally:
            reader.close()
        new = {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}
    else:
        for partition, (low, high) in marks.items():
            new[partition] = low if from_beginning else min(max(to_offset or 0, low), high)
    rows = [{"partition": p, "old": old.get(p), "new": new[p], "low": marks[p][0], "high": marks[p][1]}
            for p in sorted(new)]
    if members and not dry_run and not force:
        fail(f"--group: {group!r} has {len(members)} live member(s) ({', '.join(members)}); stop them first, "
             "or pass --force (their next commit may overwrite the reset)")
    if not dry_run:
        request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in new.items()])]
        try:
            admin = AdminClient(kafka)  # must outlive the future
            admin.alter_consumer_group_offsets(request)[group].result(30)
        except KafkaException as error:
            fail(f"the broker refused the reset of {group!r}: {error.args[0].str()}"
                 + (" (a group with live members cannot be reset; stop them)" if members else ""))
    if as_json:
        print_json({"group": group, "topic": topic, "dry_run": dry_run, "live_members": members,
                    "partitions": rows})
        return
    table(f"{group} on {topic}{' (dry run)' if dry_run else ''}", ["partition", "old", "new", "low", "high"],
          [[r["partition"], r["old"], r["new"], r["low"], r["high"]] for r in rows])
    if members:
        typer.echo(f"warning: {len(members)} live member(s) may overwrite these offsets with their next commit")


# ---------------------------------------------------------------- rebuilds


@rebuild_app.command("projections")
def rebuild_projections(
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="From offset 0 (default).")] = False,
    from_time: Annotated[str | None, typer.Option(help="Only events at or after this ISO time.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fold the log into fresh read-model tables, then swap them in atomically."""
    if from_beginning and from_time:
        fail("give --from-beginning or --from-time, not both")
    at_ms = parse_time(from_time, "--from-time") if from_time else None
    from taskplane.cli_processors import kafka_endpoints
    from taskplane.processors.projector.rebuild import rebuild_projections as rebuild

    kafka, topics = kafka_endpoints()
    report = rebuild(kafka, topics, database_url(), from_time_ms=at_ms)
    if as_json:
        print_json({"schema": report.schema, "records": report.records, "swapped": report.swapped})
        return
    typer.echo(f"rebuilt {report.records} records into {report.schema}; swapped in as the live read model")


@rebuild_app.command("state")
def rebuild_state(
    write: Annotated[bool, typer.Option("--write", help="Produce rebuilt states that differ to the changelog.")]
    = False,
    force: Annotated[bool, typer.Option("--force", help="--write even while the orchestrator runs.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fold `events` through the orchestrator's evolve and compare, byte for byte, with the changelog."""
    from taskplane.cli_processors import kafka_endpoints

    kafka, topics = kafka_endpoints()
    result = compare_states(kafka, topics)
    if write and result.differing:
        members = live_members(kafka, f"{topics.prefix}.orchestrator")
        if members and not force:
            fail(f"the orchestrator group has {len(members)} live member(s); stop it first or pass --force")
        write_states(kafka, topics, result)
    if as_json:
        print_json({"keys": result.keys, "equal": result.equal, "differing": sorted(result.differing),
                    "written": bool(write and result.differing)})
    else:
        typer.echo(f"{result.keys} run states folded from {topics.events}: {result.equal} equal to the changelog, "
                   f"{len(result.differing)} differing")
        for key in sorted(result.differing)[:20]:
            typer.echo(f"  differs: {key}")
    if result.differing and not write:
        raise typer.Exit(1)


@dataclass(slots=True)
class StateComparison:
    keys: int = 0
    equal: int = 0
    differing: set[str] = field(default_factory=set)
    rebuilt: dict[str, tuple[int, bytes | None]] = field(default_factory=dict)  # key -> (partition, value)


def read_all(kafka_config: dict[str, Any], topic: str) -> list[tuple[int, str, bytes | None]]:
    """Every committed record of ``topic``, in partition order: (partition, key, value)."""
    return sorted(read_to_end(kafka_config, topic, group_id="taskplane-offset-tools"), key=lambda r: r[0])


def compare_states(kafka_config: dict[str, Any], topics: Any) -> StateComparison:
    """Fold ``events`` with the orchestrator's evolve; compare encoded states with the changelog."""
    from taskplane.processors.orchestrator.decider import OrchestratorDecider
    from taskplane.streams.runtime import state_meta
    from taskplane.streams.serde import Serde

    decider, serde = OrchestratorDecider(), Serde()
    states: dict[str, Any] = {}
    partition_of: dict[str, int] = {}
    for partition, key, value in read_all(kafka_config, topics.name("events")):
        if value is None:
            continue
        states[key] = decider.evolve(states.get(key), serde.decode(value)[1])
        partition_of[key] = partition
    live: dict[str, bytes | None] = {}
    for _partition, key, value in read_all(kafka_config, topics.name("orchestrator-changelog")):
        live[key] = value
    result = StateComparison()
    for key in sorted(set(states) | {k for k, v in live.items() if v is not None}):
        state = states.get(key)
        encoded = None if state is None else serde.encode(state, state_meta(key))
        result.keys += 1
        result.rebuilt[key] = (partition_of.get(key, -1), encoded)
        if encoded == live.get(key):
            result.equal += 1
        else:
            result.differing.add(key)
    return result


def write_states(kafka_config: dict[str, Any], topics: Any, result: StateComparison) -> None:
    producer = Producer({**kafka_config, "acks": "all", "enable.idempotence": True})
    changelog = topics.name("orchestrator-changelog")
    for key in sorted(result.differing):
        partition, value = result.rebuilt[key]
        if partition >= 0:
            producer.produce(changelog, value, key, partition)
        else:
            producer.produce(changelog, value, key)
    if producer.flush(30):
        fail("some rebuilt states were not written; run again")
