"""Garbage on every input topic (``commands``, ``work``, ``tool-outcomes``) lands on
``poison`` with the reason, and the orchestrator, the breaker and a worker, all running
on the real broker, keep serving: a normal run afterwards succeeds, its tool outcome
folded by the breaker (invariant 6). Unit-level fuzzing: tests/streams/test_poison.py."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from taskplane.contract.messages import (
    ClaimTask,
    RunSucceeded,
    SubmitRun,
    Tick,
    ToolOutcome,
    WorkItem,
)
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, Isolation, SystemPlan, ToolPlan
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing.stack import EventLog, ProcessorThreads
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from taskplane.workers.worker import Worker
from tests.e2e import _poison_agents

pytestmark = pytest.mark.kafka

TOOL = ToolPlan("poison.echo", 5_000, 0, Isolation.NONE, 3, 60_000)
PLAN = SystemPlan("poisoned", "v1", (AgentPlan("first", None, (TOOL,), ()), AgentPlan("second", None, (), ("first",))),
                  ExecutionPolicy(lease_timeout_ms=5_000))
SERDE = Serde()


def encoded(message: Any, key: str) -> bytes:
    return SERDE.encode(message, new_meta(key, type(message).__name__, int(time.time() * 1000)))


def garbage(wrong: Any, seed: int) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]]:
    """(key, value, headers): random bytes, a tombstone, a real message of the wrong kind,
    a real message under a key that is not UTF-8, a real header with a cut body; with
    headers nobody asked for."""
    rng = random.Random(seed)
    good = encoded(SubmitRun("r-x", PLAN, "{}"), "r-x") if not isinstance(wrong, SubmitRun) else encoded(
        WorkItem("r-x", "poisoned", "first", 1), "r-x")
    noise = [("\xff-header", bytes(rng.randrange(256) for _ in range(20))), ("", b"")]
    return [
        (b"k1", bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))), noise),
        (b"k2", None, None),
        (b"k3", encoded(wrong, "k3"), noise),
        (b"\xff\xfe\xfd", good, None),
        (b"k5", good[: len(good) // 2], noise),
    ]


def poison_records(kafka_config: dict[str, Any], topic: str, count: int, timeout_s: float = 90) -> list[Any]:
    """What ``poison`` holds once ``count`` distinct source records are on it."""
    consumer = Consumer({**kafka_config, "group.id": f"{topic}-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    found: list[Any] = []
    sources: set[tuple[bytes, ...]] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(sources) < count and time.monotonic() < deadline:
            batch = [m for m in consumer.consume(50, 0.5) if m.error() is None]
            found += batch
            sources |= {tuple(dict(m.headers() or [])[name] for name in ("source.topic", "source.partition",
                                                                         "source.offset")) for m in batch}
        found += [m for m in consumer.consume(50, 1.0) if m.error() is None]  # a copy written late
    finally:
        consumer.close()
    return found


def test_garbage_on_every_input_topic_is_set_aside_and_everything_keeps_serving(
        kafka_config: dict[str, Any], unique_prefix: str) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog(2, 1))
    worker = Worker(dict(kafka_config), topics, "poisoned", Registry.from_module(_poison_agents),
                    WorkerSettings(worker_id=f"w-{unique_prefix}", concurrency=2, claim_timeout_s=20), plan=PLAN)
    serving = threading.Thread(target=worker.run, daemon=True)
    with ProcessorThreads(dict(kafka_config), topics, None) as processors, \
            EventLog(dict(kafka_config), topics.events) as log:
        serving.start()
        producer = Producer({**kafka_config, "partitioner": "murmur2_random"})  # as every client of commands
        sent: dict[str, int] = {}
        for seed, (topic, wrong) in enumerate([(topics.commands, WorkItem("r-x", "poisoned", "first", 1)),
                                               (topics.work, SubmitRun("r-x", PLAN, "{}")),
                                               (topics.name("tool-outcomes"), ClaimTask("r-x", "first", 1, "w"))]):
            records = garbage(wrong, seed)
            for key, value, headers in records:
                producer.produce(topic, value, key, headers=headers)
            sent[topic] = len(records)
        producer.produce(topics.commands, encoded(Tick(1), ""), b"", headers=[("x", b"\x00")])  # still a command
        assert producer.flush(30) == 0

        poisoned = poison_records(dict(kafka_config), topics.poison, sum(sent.values()))
        by_source: dict[str, list[dict[str, bytes]]] = {}
        for record in poisoned:
            headers = dict(record.headers() or [])
            by_source.setdefault(headers["source.topic"].decode(), []).append(headers)
        distinct = {topic: {(h["source.partition"], h["source.offset"]) for h in found}
                    for topic, found in by_source.items()}
        assert {topic: len(found) for topic, found in distinct.items()} == sent
        # the processors set aside in their transaction: once; the worker at least once
        # (a record read again after a rebalance, before its offset was committed, again)
        assert len(by_source[topics.commands]) == sent[topics.commands]
        assert len(by_source[topics.name("tool-outcomes")]) == sent[topics.name("tool-outcomes")]
        reasons = {topic: sorted(h["error"].decode().split(":")[0].split(" (")[0] for h in found)
                   for topic, found in by_source.items()}
        assert "no value" in " ".join(reasons[topics.commands])
        assert any(r.startswith("a WorkItem is not an input here") for r in reasons[topics.commands])
        assert any(r.startswith("key is not UTF-8") for r in reasons[topics.commands])
        assert any(r.startswith("a SubmitRun is not an input here") for r in reasons[topics.work])
        assert any(r.startswith("a ClaimTask is not an input here") for r in reasons[topics.name("tool-outcomes")])
        assert {h["processor"].decode().split(".")[-1] for f in by_source.values() for h in f} == {
            "orchestrator", "breaker", "worker:poisoned"}

        # Everyone is still serving: a normal run goes through the worker; the breaker counts a failure.
        producer.produce(topics.commands, encoded(SubmitRun("r-ok", PLAN, '"hello"'), "r-ok"), b"r-ok")
        assert producer.flush(30) == 0
        try:
            log.wait_for(lambda events: events.events(RunSucceeded, "r-ok"), 90, also=processors.check)
        except TimeoutError:
            raise AssertionError([e for e in log.all_events() if getattr(e, "run_id", None) == "r-ok"]) from None
        assert serving.is_alive()
        outcome = ToolOutcome("poison.echo", False, 3, 60_000, "r-ok", "HTTP 500")  # a failure the breaker counts
        producer.produce(topics.name("tool-outcomes"), encoded(outcome, "poison.echo"), b"poison.echo")
        assert producer.flush(30) == 0
        breaker_state = EventLog(dict(kafka_config), topics.breakers)
        try:
            breaker_state.wait_for(lambda table: [state for state in table.all_events()
                                                  if state.consecutive_failures == 1], 60, also=processors.check)
        finally:
            breaker_state.close()
    worker.stop()
    serving.join(30)
    assert not processors.failures
