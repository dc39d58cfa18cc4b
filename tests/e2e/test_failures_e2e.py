"""Failure paths on the real broker: a tool failing every time dead-letters its task
after maxRetries with the backoff schedule, and a breaker opens, half-opens after its
cooldown and closes after a good probe (read from the read model's breakers table)."""

from __future__ import annotations

import time
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from taskplane.contract import messages as m
from taskplane.streams.serde import Serde, new_meta
from tests.e2e.e2e_pipeline import E2E_TOOLS, Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
DOOMED = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: doomed}
spec:
  agents:
    - name: doomed
      tools: [always.fail]
  execution: {leaseTimeout: 2s, maxRetries: 4, initialBackoff: 300ms, backoffMultiplier: 2.0,
              maxBackoffCap: 1s, jitterFraction: 0.2}
"""


def _deadletter_records(pipeline: Pipeline) -> list[Any]:
    consumer = Consumer({**pipeline.kafka, "group.id": f"{pipeline.topics.prefix}.dlq-reader",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    topic = pipeline.topics.deadletter
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    found: list[Any] = []
    deadline = time.monotonic() + 10
    while not found and time.monotonic() < deadline:
        found += [Serde().decode(r.value())[1] for r in consumer.consume(100, 0.5) if r.error() is None]
    consumer.close()
    return found


def test_a_tool_failing_every_time_dead_letters_after_max_retries_with_backoff(pipeline: Pipeline) -> None:
    plan = pipeline.define(DOOMED)
    policy = plan.execution
    pipeline.worker("w1", {"doomed": E2E_TOOLS})
    run_id = pipeline.publisher.submit_run(plan, {"what": "charge"})
    pipeline.publisher.flush()
    letter = pipeline.wait(lambda log: log.events(m.TaskDeadLettered, run_id), 45)[0]

    failures = pipeline.log.events(m.AttemptFailed, run_id)
    retries = pipeline.log.events(m.RetryScheduled, run_id)
    assert letter.attempts == policy.max_retries == len(failures)
    assert all(f.counted for f in failures) and "dependency is down" in letter.error
    assert [r.attempt for r in retries] == list(range(2, policy.max_retries + 1))
    for n, retry in enumerate(retries, start=1):  # backoff after the n-th failure
        base = min(policy.initial_backoff_ms * policy.backoff_multiplier ** (n - 1), policy.max_backoff_ms)
        low, high = base * (1 - policy.jitter_fraction), base * (1 + policy.jitter_fraction)
        assert low - 1 <= retry.backoff_ms <= high + 1, (n, retry.backoff_ms, base)
    assert max(r.backoff_ms for r in retries) <= policy.max_backoff_ms * (1 + policy.jitter_fraction) + 1

    # The retries really waited: each grant after a failure comes at least the backoff later (log time).
    stamps = [(meta.timestamp_ms, event) for meta, event in pipeline.log.records()
              if getattr(event, "run_id", None) == run_id]
    failed_at = {e.attempt: t for t, e in stamps if isinstance(e, m.AttemptFailed)}
    granted_at = {e.attempt: t for t, e in stamps if isinstance(e, m.LeaseGranted)}
    for retry in retries:
        assert granted_at[retry.attempt] - failed_at[retry.attempt - 1] >= retry.backoff_ms - 50

    assert not pipeline.log.events(m.RunSucceeded, run_id)
    records = [r for r in _deadletter_records(pipeline) if isinstance(r, m.DeadLetterRecord)]
    assert [(r.run_id, r.task, len(r.attempts)) for r in records] == [(run_id, "doomed", policy.max_retries)]


def test_a_breaker_opens_at_its_threshold_and_closes_after_cooldown_and_a_good_probe(pipeline: Pipeline) -> None:
    producer = Producer(pipeline.kafka)
    serde = Serde()
    tool, threshold, cooldown_ms = "flaky.api", 3, 1_500

    def outcome(ok: bool) -> None:
        value = m.ToolOutcome(tool, ok, threshold, cooldown_ms, "run-1", None if ok else "503")
        meta = new_meta(tool, "ToolOutcome", int(time.time() * 1000))
        producer.produce(pipeline.topics.tool_outcomes, serde.encode(value, meta), tool)
        producer.flush(10)

    def breaker() -> dict[str, Any] | None:
        try:
            with psycopg.connect(pipeline.database_url, options=f"-c search_path={pipeline.schema}") as conn:
                row = conn.execute("SELECT status, consecutive_failures, transitions FROM breakers "
                                   "WHERE tool = %s", (tool,)).fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        return None if row is None else {"status": row[0], "failures": row[1], "transitions": row[2]}

    def until(status: str, timeout_s: float = 20, failures: int | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pipeline.processors.check()
            state = breaker()
            if state is not None and state["status"] == status and failures in (None, state["failures"]):
                return state
            time.sleep(0.1)
        raise AssertionError(f"breaker never became {status} (failures {failures}); last {breaker()}")

    for _ in range(threshold - 1):
        outcome(False)
    until("closed", failures=threshold - 1)  # below the threshold: counted, still closed
    outcome(False)
    opened_at = time.monotonic()
    until("open")
    until("half_open", timeout_s=cooldown_ms / 1000 + 10)
    assert time.monotonic() - opened_at >= cooldown_ms / 1000 - 0.3  # not before the cooldown
    outcome(True)  # the probe succeeds
    closed = until("closed")
    assert closed["failures"] == 0 and closed["transitions"] >= 3
