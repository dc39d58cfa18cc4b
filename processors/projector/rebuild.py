"""``taskplane rebuild projections``: fold the log into fresh tables, then swap them in.

The new read model is built in its own Postgres schema (``readmodel_rebuild_<ms>``)
by the same fold and store the live projector uses, read to the end of ``events``
(from the beginning or from a time) and ``breakers`` (always whole: it is a compacted
current-state table). The swap renames schemas in one transaction under the exclusive
advisory lock that every projector batch takes shared, and only once the new tables
are at or past the live projector's offsets; the live projector notices the moved
offsets on its next batch and seeks. Readers resolve ``readmodel`` by name, so they
see the old tables or the new ones, never a mix.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition
from psycopg import sql

from taskplane.processors.projector.app import SOURCES
from taskplane.processors.projector.schema import (
    LIVE_SCHEMA,
    SWAP_LOCK,
    connect,
    migrate,
    schema_exists,
)
from taskplane.processors.projector.store import ReadModelStore
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import KafkaIOError
from taskplane.streams.plan_source import SystemsPlans
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RebuildReport:
    schema: str
    records: int = 0
    offsets: dict[tuple[str, int], int | None] = field(default_factory=dict)
    swapped: bool = False
    retired: str | None = None


def rebuild_projections(
    kafka_config: dict[str, Any],
    topics: Topics,
    database_url: str,
    from_time_ms: int | None = None,
    swap: bool = True,
    live_schema: str = LIVE_SCHEMA,
    timeout_s: float = 300.0,
) -> RebuildReport:
    stamp = int(time.time() * 1000)
    report = RebuildReport(f"{live_schema}_rebuild_{stamp}")
    deadline = time.monotonic() + timeout_s
    consumer = kafka_clients.consumer(kafka_config, f"{topics.prefix}.projector-rebuild",  # never commits
                                      start="earliest", eof=True)
    plans = SystemsPlans(kafka_config, topics.systems)
    try:
        plans.start()
        with connect(database_url, report.schema) as conn:
            migrate(conn, report.schema)
            store = ReadModelStore(conn, topics.name("breakers"), plans=plans.resolve)
            assignment = _start_offsets(consumer, topics, from_time_ms)
            consumer.assign(assignment)
            report.records += _read_to_end(consumer, store, {(tp.topic, tp.partition) for tp in assignment}, deadline)
            while swap:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SWAP_LOCK,))
                    behind = _behind_live(conn, live_schema, store.expected)
                    if not behind:
                        report.retired = _swap(conn, live_schema, report.schema, stamp)
                        report.swapped = True
                        break
                log.info("rebuild: live read model is ahead on %s; reading on", behind)
                if time.monotonic() > deadline:
                    raise KafkaIOError(f"rebuild could not catch up with the live projector on {behind}", retryable=True)
                report.records += _read_to_end(consumer, store, set(behind), deadline)
            report.offsets = dict(store.expected)
        if report.retired is not None:
            with connect(database_url, live_schema, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(report.retired)))
    finally:
        consumer.close()
        plans.close()
    return report


def _start_offsets(consumer: Consumer, topics: Topics, from_time_ms: int | None) -> list[TopicPartition]:
    assignment: list[TopicPartition] = []
    for role in SOURCES:
        topic = topics.name(role)
        metadata = consumer.list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None:
            if metadata is None:
                raise KafkaIOError(f"rebuild: no topic {topic}")
            raise KafkaIOError.wrap(metadata.error, f"rebuild: {topic}")
        partitions = sorted(metadata.partitions)
        if from_time_ms is not None and role == "events":
            wanted = [TopicPartition(topic, p, from_time_ms) for p in partitions]
            for tp in consumer.offsets_for_times(wanted, timeout=30):
                # -1: nothing at or after the time; start at the end of that partition
                assignment.append(TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else
                                                 consumer.get_watermark_offsets(tp, timeout=30)[1]))
        else:
            assignment.extend(TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions)
    return assignment


def _read_to_end(consumer: Consumer, store: ReadModelStore, pending: set[tuple[str, int]],
                 deadline: float) -> int:
    """Fold until every partition in ``pending`` reported its end (the stable offset)."""
    applied = 0
    pending = set(pending)
    while pending:
        if time.monotonic() > deadline:
            raise KafkaIOError(f"rebuild still reading {sorted(pending)}", retryable=True)
        records = consumer.consume(2_000, 0.5)
        good = []
        for record in records:
            error = record.error()
            if error is None:
                good.append(record)
            elif error.code() == KafkaError._PARTITION_EOF:
                pending.discard((record.topic(), record.partition()))
            else:
                raise KafkaIOError.wrap(error, "rebuild: consume")
        if good:
            result = store.apply(good)
            if result.moved is not None:
                raise RuntimeError(f"rebuild schema offsets moved under the rebuild: {result.moved}")
            applied += result.applied
    return applied


def _behind_live(conn: Any, live: str, rebuilt: dict[tuple[str, int], int | None]) -> list[tuple[str, int]]:
    if not schema_exists(conn, live):
        return []
    rows = conn.execute(
        sql.SQL("SELECT topic, partition, next_offset FROM {}.projector_offsets").format(sql.Identifier(live))
    ).fetchall()
    return [(t, p) for t, p, o in rows if (rebuilt.get((t, p)) or -1) < o]


def _swap(conn: Any, live: str, rebuilt: str, stamp: int) -> str | None:
    retired = None
    if schema_exists(conn, live):
        retired = f"{live}_retired_{stamp}"
        conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(retired)))
    conn.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(sql.Identifier(rebuilt), sql.Identifier(live)))
    return retired
