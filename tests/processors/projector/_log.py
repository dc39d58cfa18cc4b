"""A synthetic but realistic orchestrator log (no decider needed) and helpers to put it
on a real topic and to wait for the projector."""

from __future__ import annotations

import time
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from taskplane.contract import messages as m
from taskplane.contract.breaker import BreakerState, BreakerStatus
from taskplane.contract.governance import Usage
from taskplane.contract.plan import (
    AgentPlan,
    ExecutionPolicy,
    Isolation,
    SystemPlan,
    ToolPlan,
)
from taskplane.streams.runtime import state_meta
from taskplane.streams.serde import Meta, Serde

PLAN = SystemPlan(
    "document-pipeline",
    "v1",
    (
        AgentPlan("parser", None, (ToolPlan("document.extract", 5000, 2, Isolation.NONE, 5, 60000),), ()),
        AgentPlan("summarizer", None, (ToolPlan("text.summarize", 5000, 2, Isolation.NONE, 5, 60000),),
                  ("parser",)),
        AgentPlan("publisher", None, (ToolPlan("database.store", 5000, 2, Isolation.NONE, 5, 60000),),
                  ("summarizer",)),
    ),
    ExecutionPolicy(),
)


USAGE = (Usage("m", 10, 2_500),)  # each tool call and completion: the read model sums them


def run_events(run_id: str, t0: int, renewals: int = 2, dead_letter: bool = False) -> list[object]:
    """One run through the pipeline; with ``dead_letter`` the summarizer dies, blocks the
    publisher, is replayed and the run then succeeds."""
    e: list[object] = [m.RunSubmitted(run_id, PLAN, '{"doc": 1}', t0)]
    epoch = 0

    def lease(task: str, attempt: int) -> None:
        nonlocal epoch
        epoch += 1
        e.append(m.LeaseGranted(run_id, task, attempt, f"w-{task}", epoch, t0 + 10_000))
        e.extend(m.LeaseRenewed(run_id, task, epoch, t0 + 20_000 + i) for i in range(renewals))

    def succeed(task: str, attempt: int, tool: str) -> None:
        e.append(m.TaskReady(run_id, task, attempt))
        lease(task, attempt)
        e.append(m.ToolCallSucceeded(run_id, task, epoch, f"k-{task}-0", tool, 0, '"ok"', USAGE))
        e.append(m.TaskSucceeded(run_id, task, attempt, epoch, f'"{task} done"', USAGE))

    succeed("parser", 1, "document.extract")
    if dead_letter:
        e.append(m.TaskReady(run_id, "summarizer", 1))
        for attempt in (1, 2):
            lease("summarizer", attempt)
            if attempt == 1:
                e.append(m.ToolCallSucceeded(run_id, "summarizer", epoch, "k-sum-0", "text.summarize", 0, '"a"'))
            e.append(m.ToolCallFailed(run_id, "summarizer", epoch, "k-sum-1", "text.summarize", 1, "HTTP 500"))
            e.append(m.AttemptFailed(run_id, "summarizer", attempt, epoch, "HTTP 500", m.FailureKind.ERROR, True))
            if attempt == 1:
                e.append(m.RetryScheduled(run_id, "summarizer", 2, t0 + 1000, 1000))
        e.append(m.TaskDeadLettered(run_id, "summarizer", 2, "HTTP 500", t0 + 2000))
        e.append(m.TaskBlocked(run_id, "publisher", "summarizer"))
        e.append(m.CommandRejected(run_id, "ClaimTask", "publisher", "w-x", "task is blocked"))
        e.append(m.TaskReplayed(run_id, "summarizer", 3, "operator"))
        e.append(m.TaskReady(run_id, "summarizer", 3))
        lease("summarizer", 3)
        e.append(m.ToolCallSucceeded(run_id, "summarizer", epoch, "k-sum-1", "text.summarize", 1, '"b"'))
        e.append(m.TaskSucceeded(run_id, "summarizer", 3, epoch, '"summary"'))
    else:
        succeed("summarizer", 1, "text.summarize")
    e.append(m.TaskReady(run_id, "publisher", 1))
    lease("publisher", 1)
    e.append(m.LeaseExpired(run_id, "publisher", epoch, "w-publisher"))
    lease("publisher", 1)
    e.append(m.ToolCallSucceeded(run_id, "publisher", epoch, "k-pub-0", "database.store", 0, '"stored"'))
    e.append(m.TaskSucceeded(run_id, "publisher", 1, epoch, '"published"'))
    e.append(m.RunSucceeded(run_id, t0 + 5000))
    return e


def produce_runs(kafka_config: dict[str, Any], events_topic: str, runs: list[tuple[str, list[object]]],
                 per_transaction: int = 50, breakers_topic: str | None = None) -> int:
    """Produce in transactions (so the log has control records, as in production)."""
    serde = Serde()
    producer = Producer({**kafka_config, "transactional.id": f"test-{events_topic}-{time.time_ns()}"})
    producer.init_transactions(30)
    count = 0
    producer.begin_transaction()
    for run_id, events in runs:
        for index, event in enumerate(events):
            at = 1_700_000_000_000 + count
            meta = Meta(f"{run_id}/{index}", run_id, type(event).__name__, 1, None, run_id, at)
            producer.produce(events_topic, serde.encode(event, meta), run_id, timestamp=at)
            count += 1
            if count % per_transaction == 0:
                producer.commit_transaction()
                producer.begin_transaction()
    if breakers_topic is not None:
        for tool, status in (("document.extract", BreakerStatus.CLOSED), ("text.summarize", BreakerStatus.OPEN)):
            state = BreakerState(tool, status, 5 if status is BreakerStatus.OPEN else 0, 5, 60000)
            producer.produce(breakers_topic, serde.encode(state, state_meta(tool)), tool, timestamp=1_700_000_000_000)
    producer.commit_transaction()
    return count


def log_ends(kafka_config: dict[str, Any], topic: str) -> dict[tuple[str, int], int]:
    """Offset after the last committed record of each partition (what the projector stores)."""
    consumer = Consumer({**kafka_config, "group.id": "ends", "enable.partition.eof": True,
                         "isolation.level": "read_committed"})
    partitions = sorted(consumer.list_topics(topic, timeout=30).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    ends: dict[tuple[str, int], int] = {}
    pending = set(partitions)
    while pending:
        for record in consumer.consume(5000, 1.0):
            if record.error() is not None:
                if record.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(record.partition())
                continue
            ends[(topic, record.partition())] = record.offset() + 1
    consumer.close()
    return ends


def wait_projected(database_url: str, ends: dict[tuple[str, int], int], schema: str = "readmodel",
                   timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    stored: dict[tuple[str, int], int] = {}
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
                rows = conn.execute("SELECT topic, partition, next_offset FROM projector_offsets").fetchall()
            stored = {(t, p): o for t, p, o in rows}
            if all(stored.get(tp, -1) >= o for tp, o in ends.items()):
                return
        except psycopg.errors.UndefinedTable:
            pass
        time.sleep(0.2)
    raise AssertionError(f"projector did not catch up: stored {stored}, wanted {ends}")


TABLES = ("runs", "tasks", "attempts", "tool_calls", "dead_letters", "breakers", "projector_offsets")


def dump(database_url: str, schema: str = "readmodel") -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(database_url, options=f"-c search_path={schema}") as conn:
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
