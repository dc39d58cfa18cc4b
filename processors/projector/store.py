"""Applying a batch of records to the read model, exactly once.

The rows a batch changes and the next offset of every source partition it read are
written in one Postgres transaction. Before writing, the stored offsets are compared
with what this consumer believes they are: when they differ (a rebuild was swapped
in, another instance moved them), nothing is written and the caller seeks to the
stored offsets instead. So a restart, a kill -9 or a swap never skips or doubles a row.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import psycopg
from confluent_kafka import Message

from taskplane.contract.messages import RunSubmitted
from taskplane.contract.plan import SystemPlan
from taskplane.processors.projector.project import Statement, breaker_statements, statements
from taskplane.processors.projector.schema import SWAP_LOCK
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.serde import Serde

log = logging.getLogger(__name__)

TopicPartitionKey = tuple[str, int]


@dataclass(slots=True)
class BatchResult:
    applied: int  # records folded
    skipped: int  # undecodable records (logged, offsets still advance)
    moved: dict[TopicPartitionKey, int | None] | None  # stored offsets when they moved under us


class ReadModelStore:
    """``plans`` resolves the plan reference a ``RunSubmitted`` carries (name and
    version, ``contract/plans.py``) to the plan with its agents."""

    def __init__(
        self,
        conn: psycopg.Connection[object],
        breakers_topic: str,
        serde: Serde | None = None,
        plans: Callable[[SystemPlan], SystemPlan] | None = None,
    ) -> None:
        self._conn = conn
        self._breakers = breakers_topic
        self._serde = serde or Serde()
        self._plans = plans
        self.expected: dict[TopicPartitionKey, int | None] = {}

    def stored_offsets(self, topics: Iterable[str]) -> dict[TopicPartitionKey, int]:
        with self._conn.transaction():
            rows = self._conn.execute(
                "SELECT topic, partition, next_offset FROM projector_offsets WHERE topic = ANY(%s)",
                (list(topics),),
            ).fetchall()
        return {(r[0], r[1]): r[2] for r in rows}  # type: ignore[index]

    def apply(self, records: list[Message], poison: Callable[[Message, Exception], None] | None = None) -> BatchResult:
        """Fold ``records`` (already free of errors) in one transaction. An undecodable
        record is handed to ``poison`` before anything commits (it must raise if it
        could not set the record aside), so none is dropped silently."""
        ends: dict[TopicPartitionKey, int] = {}
        batch: list[Statement] = []
        skipped = 0
        for record in records:
            ends[(record.topic(), record.partition())] = record.offset() + 1
            try:
                batch.extend(self._statements(record))
            except SerdeError as error:
                skipped += 1
                log.warning("projector: undecodable %s[%d]@%d: %s",
                            record.topic(), record.partition(), record.offset(), error)
                if poison is not None:
                    poison(record, error)
        conn = self._conn
        with conn.transaction():
            # Shared: batches of several writers interleave; a schema swap takes it exclusively.
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SWAP_LOCK,))
            rows = conn.execute(
                "SELECT topic, partition, next_offset FROM projector_offsets"
                " WHERE topic = ANY(%s) FOR UPDATE",
                (sorted({t for t, _ in ends}),),
            ).fetchall()
            stored: dict[TopicPartitionKey, int | None] = {(r[0], r[1]): r[2] for r in rows}  # type: ignore[index]
            moved = {tp: stored.get(tp) for tp in ends if stored.get(tp) != self.expected.get(tp)}
            if moved:
                return BatchResult(0, 0, moved)
            with conn.cursor() as cursor:
                _execute_grouped(cursor, batch)
                cursor.executemany(
                    "INSERT INTO projector_offsets (topic, partition, next_offset) VALUES (%s, %s, %s)"
                    " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = EXCLUDED.next_offset",
                    [(t, p, o) for (t, p), o in sorted(ends.items())],
                )
        self.expected.update(ends)
        return BatchResult(len(records) - skipped, skipped, None)

    def _statements(self, record: Message) -> list[Statement]:
        value = record.value()
        if record.topic() == self._breakers:
            key = record.key()
            tool = key.decode(errors="replace") if key else ""  # a garbage key must not stop the projector
            if value is None:
                return breaker_statements(tool, None, record.timestamp()[1])
            meta, state = self._serde.decode(value)
            return breaker_statements(tool, state, record.timestamp()[1])  # type: ignore[arg-type]
        if value is None:
            return []
        meta, event = self._serde.decode(value)
        if isinstance(event, RunSubmitted) and not event.plan.agents and self._plans is not None:
            event = replace(event, plan=self._plans(event.plan))
        return statements(event, meta.timestamp_ms)


def _execute_grouped(cursor: psycopg.Cursor[object], batch: list[Statement]) -> None:
    """Runs of the same statement go through one executemany (pipelined by psycopg)."""
    start = 0
    while start < len(batch):
        end = start + 1
        while end < len(batch) and batch[end][0] == batch[start][0]:
            end += 1
        if end - start == 1:
            cursor.execute(batch[start][0], batch[start][1])  # type: ignore[arg-type]
        else:
            cursor.executemany(batch[start][0], [params for _, params in batch[start:end]])  # type: ignore[arg-type]
        start = end
