"""Progress of each component, read from sources outside its own process: the
committed offsets of its consumer group (orchestrator, breaker, workers) or the
offsets the projector stored in Postgres. Chaos tests and benchmarks wait for these
to move to tell "alive and serving" from "alive and wedged".

    probe = Progress(kafka, topics, database_url, schema)
    before = probe.positions()
    ... later: probe.moved_since(before) -> {"orchestrator", "worker", ...}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition
from psycopg import sql

from taskplane.streams import kafka_clients
from taskplane.streams.topics import Topics

# What every deployment moves under any load. The dispatcher and cron are probed too, by
# name: they move only when runs have a tenant (docs/scheduling.md) or a schedule fires.
COMPONENTS = ("orchestrator", "breaker", "projector", "worker")


class Progress:
    def __init__(self, kafka_config: dict[str, Any], topics: Topics, database_url: str | None,
                 schema: str | None, systems: Iterable[str] = ()) -> None:
        self._kafka = {**kafka_config, "log_level": 0}
        self._topics = topics
        self._dsn = database_url
        self._schema = schema
        self._readers: dict[str, Consumer] = {}  # one per group, kept: a new client per probe
        self._partitions: dict[str, list[int]] = {}  # costs a connection and a coordinator lookup
        self._groups = {
            "orchestrator": (f"{topics.prefix}.orchestrator", topics.commands),
            "breaker": (f"{topics.prefix}.breaker", topics.name("tool-outcomes")),
            "dispatcher": (f"{topics.prefix}.dispatcher", topics.dispatch),
            "cron": (f"{topics.prefix}.cron", topics.schedules),
            **{"worker" if i == 0 else f"worker:{s}": (f"{topics.prefix}.workers.{s}", topics.work)
               for i, s in enumerate(systems)},
        }

    def positions(self, timeout_s: float = 2.0) -> dict[str, int]:
        """Sum of committed offsets per component (-1 where it could not be read now)."""
        found = {name: self._group_position(group, topic, timeout_s)
                 for name, (group, topic) in self._groups.items()}
        if self._dsn is not None and self._schema is not None:
            found["projector"] = self._projector_position()
        return found

    def moved_since(self, before: dict[str, int], timeout_s: float = 2.0) -> set[str]:
        now = self.positions(timeout_s)
        return {name for name, position in now.items() if position > before.get(name, -1) >= 0}

    def baseline(self, timeout_s: float = 60.0) -> dict[str, int]:
        """Positions once every one of them could be read (-1 while a coordinator loads)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.positions()
            if min(found.values()) >= 0 or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def _group_position(self, group: str, topic: str, timeout_s: float) -> int:
        reader = self._readers.get(group)
        if reader is None:  # never subscribes: reading a group's offsets does not join it
            reader = self._readers[group] = kafka_clients.consumer(self._kafka, group, committed_only=False)
        try:
            if topic not in self._partitions:
                self._partitions[topic] = list(reader.list_topics(topic, timeout=timeout_s).topics[topic].partitions)
            committed = reader.committed([TopicPartition(topic, p) for p in self._partitions[topic]], timeout_s)
            return sum(max(tp.offset, 0) for tp in committed)
        except KafkaException:
            return -1

    def _projector_position(self) -> int:
        assert self._dsn is not None and self._schema is not None
        try:
            with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                query = sql.SQL("SELECT coalesce(sum(next_offset), 0) FROM {}.projector_offsets").format(
                    sql.Identifier(self._schema))
                row = conn.execute(query).fetchone()
        except psycopg.Error:
            return -1
        return int(row[0]) if row else 0


def wait_until(condition: Callable[[], bool], timeout_s: float, pause_s: float = 0.2) -> float | None:
    """Seconds until ``condition()`` held, or None when it did not within ``timeout_s``."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            return None
        time.sleep(pause_s)


def first_progress(probe: Progress, before: dict[str, int], components: Iterable[str],
                   timeout_s: float) -> dict[str, float | None]:
    """Seconds from now until each component's position first moved past ``before``."""
    started = time.monotonic()
    pending = set(components)
    took: dict[str, float | None] = {name: None for name in pending}
    while pending and time.monotonic() - started < timeout_s:
        for name in probe.moved_since(before) & pending:
            took[name] = time.monotonic() - started
            pending.discard(name)
        if pending:
            time.sleep(0.1)
    return took
