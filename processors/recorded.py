"""A processor's recorded log, for ``taskplane verify`` (docs/verify.md): its input
(recorded as ``commands``), its events (``events``) and its changelog (``changelog``),
from a fixture file or a live cluster, decoded per partition and re-decided with
``contract/replay.py``. Shared by every processor's ``verify.py``.

A fixture file is JSON lines: a header ``{"format": "taskplane-log/1", "schemas": {...}}``
(the writer schemas of its records, so it decodes after the current schemas moved on),
then one record a line: ``{"topic": "commands"|"events"|"changelog", "partition",
"offset", "timestamp", "key", "value"}`` with the value as base64 of the bytes on the
topic (empty: a changelog tombstone). A live cluster is read like the runtime reads it
(read-committed, to the end).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskplane.contract.errors import TaskplaneError
from taskplane.contract.replay import (
    Divergence,
    LoggedCommand,
    LoggedEvent,
    PartitionReport,
    replay_partition,
)
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.log_reader import read_messages_to_end
from taskplane.streams.serde import SCHEMA_DIR, SchemaRegistry, Serde, load_schema_set
from taskplane.streams.topics import Topics

FORMAT = "taskplane-log/1"
ROLES = ("commands", "events")
TOPICS = (*ROLES, "changelog")


class BadLog(TaskplaneError):
    """A log that cannot be read as one (a missing file, not the format, a bad line)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str  # "commands", "events" or "changelog"
    partition: int
    offset: int
    timestamp: int
    key: str
    value: bytes


@dataclass(slots=True)
class RecordedLog:
    records: list[RawRecord]
    schemas: dict[str, Any] = field(default_factory=dict)  # writer schemas by full name (fixtures)
    # Changelog keys that changed while a live cluster was read (before and after its
    # events): their state is not compared with the fold of events read in between.
    moving: set[tuple[int, str]] = field(default_factory=set)
    with_changelog: bool = False  # the processor's changelog was read (empty or not)
    live: bool = False  # read from a cluster: commands after the last one with events may be undecided yet


@dataclass(frozen=True, slots=True)
class StateMismatch:
    """A key whose changelog state is not the fold of its recorded events."""

    partition: int
    key: str
    stored: Any  # None: no state in the changelog
    folded: Any  # None: the events fold to none


@dataclass(slots=True)
class Verdict:
    partitions: list[PartitionReport]
    undecodable: int = 0
    states_compared: int = 0  # keys whose changelog state was compared with the fold of their events
    states_skipped: int = 0  # changing while read, or history past the topics' retention
    state_mismatches: list[StateMismatch] = field(default_factory=list)

    @property
    def divergences(self) -> list[Divergence]:
        return [d for report in self.partitions for d in report.divergences]

    @property
    def first(self) -> Divergence | None:
        found = self.divergences
        return min(found, key=lambda d: (d.partition, d.command.offset if d.command else -1)) if found else None

    def total(self, name: str) -> int:
        return sum(getattr(report, name) for report in self.partitions)


# ---------------------------------------------------------------- reading


def read_fixture(path: Path) -> RecordedLog:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise BadLog(f"{path}: cannot read: {error}") from None
    if not lines:
        raise BadLog(f"{path}: empty, not a {FORMAT} file")
    header = _json(path, 1, lines[0])
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadLog(f"{path}: line 1: not a {FORMAT} header")
    schemas = header.get("schemas") or {}
    if not isinstance(schemas, dict):
        raise BadLog(f"{path}: line 1: schemas: not an object")
    records = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        item = _json(path, number, line)
        try:
            topic = item["topic"]
            if topic not in TOPICS:
                raise ValueError(f"topic {topic!r} is not one of {', '.join(TOPICS)}")
            records.append(RawRecord(topic, int(item["partition"]), int(item["offset"]), int(item["timestamp"]),
                                     str(item.get("key") or ""), base64.b64decode(item["value"], validate=True)))
        except (KeyError, TypeError, ValueError, binascii.Error) as error:
            raise BadLog(f"{path}: line {number}: {_reason(error)}") from None
    return RecordedLog(records, schemas, with_changelog=any(r.topic == "changelog" for r in records))


def read_fixtures(path: Path) -> list[tuple[Path, RecordedLog]]:
    """A fixture file, or every ``*.jsonl`` of a directory."""
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise BadLog(f"{path}: no *.jsonl log in this directory")
        return [(file, read_fixture(file)) for file in files]
    if not path.exists():
        raise BadLog(f"{path}: no such file or directory")
    return [(path, read_fixture(path))]


def read_cluster(kafka_config: dict[str, Any], topics: Topics, roles: tuple[str, ...] = ROLES) -> RecordedLog:
    """A processor's input and events topics (``roles``), recorded as ``commands`` and
    ``events`` (the dispatcher's: ``dispatch`` and ``dispatch-events``), and its
    changelog when ``roles`` names a third topic. The changelog is read before and after
    the others: a key it holds that changed meanwhile is ``moving``."""
    changelog = roles[2] if len(roles) > 2 else None
    before = _table(_read(kafka_config, topics, changelog, "changelog")) if changelog else {}
    # The events before the input: every event read has its command in the input read
    # after it (the processor commits in input order; ``partitioned`` trims the rest).
    records = [*_read(kafka_config, topics, roles[1], "events"), *_read(kafka_config, topics, roles[0], "commands")]
    moving: set[tuple[int, str]] = set()
    if changelog:
        after = _read(kafka_config, topics, changelog, "changelog")
        table = _table(after)
        moving = {key for key in before.keys() | table.keys() if before.get(key) != table.get(key)}
        records += after
    return RecordedLog(records, moving=moving, with_changelog=changelog is not None, live=True)


def _read(kafka_config: dict[str, Any], topics: Topics, role: str, recorded_as: str) -> list[RawRecord]:
    records = []
    for message in read_messages_to_end(kafka_config, topics.name(role), group_id=f"{topics.prefix}.verify"):
        key = message.key()
        records.append(RawRecord(recorded_as, message.partition(), message.offset(), message.timestamp()[1],
                                 key.decode() if key else "", message.value() or b""))
    return records


def _table(records: Iterable[RawRecord]) -> dict[tuple[int, str], bytes]:
    """A compacted topic's last values by (partition, key): what a restore reads."""
    values: dict[tuple[int, str], bytes] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        if record.value:
            values[(record.partition, record.key)] = record.value
        else:
            values.pop((record.partition, record.key), None)
    return values


def changelog_values(log: RecordedLog) -> dict[int, dict[str, bytes]]:
    """The log's changelog as a restore reads it: the last value of each key, per partition."""
    by_partition: dict[int, dict[str, bytes]] = {}
    for (partition, key), value in _table(r for r in log.records if r.topic == "changelog").items():
        by_partition.setdefault(partition, {})[key] = value
    return by_partition


def write_fixture(path: Path, log: RecordedLog) -> None:
    """``log`` as a fixture, with the writer schemas its records need (the current ones)."""
    lines = [json.dumps({"format": FORMAT, "schemas": log.schemas}, sort_keys=True, separators=(",", ":"))]
    for record in log.records:
        lines.append(json.dumps({"topic": record.topic, "partition": record.partition, "offset": record.offset,
                                 "timestamp": record.timestamp, "key": record.key,
                                 "value": base64.b64encode(record.value).decode()}, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def current_schemas(used: Iterable[str]) -> dict[str, Any]:
    """The current schemas of the message types ``used`` (full names) and of the named
    types they reference: what a fixture needs to decode after the schemas move on."""
    schemas = load_schema_set(SCHEMA_DIR)
    wanted: dict[str, Any] = {}
    pending = [name for name in used if name in schemas]
    while pending:
        name = pending.pop()
        if name not in wanted:
            wanted[name] = schemas[name]
            pending.extend(_names_in(schemas[name], schemas))
    return wanted


def _names_in(node: Any, schemas: Mapping[str, Any]) -> list[str]:
    if isinstance(node, str):
        return [node] if node in schemas else []
    if isinstance(node, list):
        return [name for item in node for name in _names_in(item, schemas)]
    if isinstance(node, dict):
        return [name for key, value in node.items() if key in ("type", "items", "values", "fields")
                for name in _names_in(value, schemas)]
    return []


# ---------------------------------------------------------------- re-deciding


Partitions = dict[int, tuple[list[LoggedCommand], list[LoggedEvent]]]


def partitioned(log: RecordedLog) -> tuple[Partitions, int]:
    """The log's commands and events per partition, decoded, and how many records did not
    decode (the runtime sent those to poison: no decision). The changelog is not here.
    Of a live log, the commands after a partition's last one with events are left out:
    the processor may not have decided them when its events were read."""
    serde = serde_for(log)
    by_partition: Partitions = {}
    undecodable = 0
    for record in sorted(log.records, key=lambda r: (r.topic, r.partition, r.offset)):
        if record.topic not in ROLES:
            continue
        try:
            meta, value = serde.decode(record.value)
        except SerdeError:
            undecodable += 1
            continue
        commands, events = by_partition.setdefault(record.partition, ([], []))
        key = record.key or meta.key
        if record.topic == "commands":
            commands.append(LoggedCommand(record.offset, key, meta.message_id, value, record.timestamp))
        else:
            events.append(LoggedEvent(record.offset, key, meta.causation_id or "", value))
    if log.live:
        for commands, events in by_partition.values():
            causes = {event.causation_id for event in events}
            last = max((i for i, c in enumerate(commands) if c.message_id in causes), default=-1)
            del commands[last + 1:]
    return by_partition, undecodable


def replay_partitions(decider: Any, by_partition: Partitions, undecodable: int,
                      wanted: Callable[[str], bool] | None = None,
                      progress: Callable[[int, int], None] | None = None) -> Verdict:
    """Each partition re-decided by ``decider`` (``contract/replay.py``); ``wanted``: the keys to verify."""
    total = sum(len(commands) for commands, _ in by_partition.values())
    verdict = Verdict([], undecodable)
    done_before = 0
    for partition in sorted(by_partition):
        commands, events = by_partition[partition]
        step = None if progress is None else (lambda n, before=done_before: progress(before + n, total))
        report = replay_partition(decider, partition, commands, events, wanted, step)
        verdict.partitions.append(report)
        done_before += len(commands)
        if progress is not None:
            progress(done_before, total)
    return verdict


def serde_for(log: RecordedLog) -> Serde:
    """A serde that reads the log: with a fixture's writer schemas next to the releases'."""
    if not log.schemas:
        return Serde()
    releases = {path.name: load_schema_set(path) for path in sorted((SCHEMA_DIR / "releases").glob("*/"))}
    try:
        registry = SchemaRegistry(load_schema_set(SCHEMA_DIR), {**releases, "recorded": log.schemas})
    except SerdeError as error:
        raise BadLog(f"the log's schemas: {error}") from None
    return Serde(registry)


def _json(path: Path, number: int, line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError as error:
        raise BadLog(f"{path}: line {number}: not JSON: {error}") from None


def _reason(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"missing field {error.args[0]!r}"
    return str(error) or type(error).__name__
