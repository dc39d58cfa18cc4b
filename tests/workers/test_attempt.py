"""An attempt against fake Kafka: journal, keys, breakers and outcomes."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from typing import Any

from taskplane.contract.breaker import BreakerState, BreakerStatus
from taskplane.contract.messages import (
    Assignment,
    CompleteTask,
    FailTask,
    FailureKind,
    JournalEntry,
    RecordToolCall,
    ReleaseLease,
)
from taskplane.contract.plan import AgentPlan, Isolation, ToolPlan
from taskplane.workers.attempt import Attempt, breaker_wait_ms
from taskplane.workers.journal import canonical_json, idempotency_key
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from tests.workers import sample_tools

REGISTRY = Registry.from_module(sample_tools)


def _assignment(journal: tuple[JournalEntry, ...] = ()) -> Assignment:
    return Assignment("w1", "run-1", "echoer", 2, True, None, 7, 0, 3_000, "sys", "gpt-x", '{"n": 1}',
                      {"parser": '{"text": "hi"}'}, journal)


def _agent(fallback: str | None = None) -> AgentPlan:
    tools = (ToolPlan("test.echo", 2_000, 0, Isolation.NONE, 3, 1_000, fallback),
             ToolPlan("test.fallback", 2_000, 0, Isolation.NONE, 3, 1_000))
    return AgentPlan("echoer", "gpt-x", tools, ("parser",))


def _run(assignment: Assignment, breakers: dict[str, BreakerState] | None = None,
         agent: AgentPlan | None = None, stopping: bool = False) -> tuple[list[Any], Attempt]:
    sent: list[Any] = []
    stop = threading.Event()
    if stopping:
        stop.set()
    attempt = Attempt(assignment, agent or _agent(), REGISTRY, WorkerSettings(worker_id="w1"), sent.append,
                      (breakers or {}).get, stop)
    attempt.run()
    return sent, attempt


def test_keys_are_stable_and_depend_on_every_part() -> None:
    key = idempotency_key("r", "t", "tool", 0, {"b": 1, "a": [1, 2]})
    assert key == idempotency_key("r", "t", "tool", 0, {"a": [1, 2], "b": 1})
    assert len(key) == 32
    others = {idempotency_key("r2", "t", "tool", 0, {}), idempotency_key("r", "t2", "tool", 0, {}),
              idempotency_key("r", "t", "tool2", 0, {}), idempotency_key("r", "t", "tool", 1, {}),
              idempotency_key("r", "t", "tool", 0, {"x": 1})}
    assert len(others) == 5


def test_idempotency_keys_keep_their_spelling() -> None:
    """Keys are on the log and in tools' dedup tables: a new spelling must give the old text."""
    import hashlib

    from taskplane.workers.journal import canonical_json

    for run_id, task, tool, index, args in [("r", "t", "tool", 0, {"b": 1, "a": [1, 2]}),
                                            ('ru"n\\', "tâsk\n", "стрipe.charge", 7, {"é": "\u2028", "x": None}),
                                            ("", "", "", 12345, [])]:
        old = canonical_json([run_id, task, tool, index, canonical_json(args)])
        assert idempotency_key(run_id, task, tool, index, args) == hashlib.sha256(old.encode()).hexdigest()[:32]


def test_an_attempt_records_each_call_then_completes_with_json_output() -> None:
    sent, attempt = _run(_assignment())
    records = [c for c in sent if isinstance(c, RecordToolCall)]
    assert [(r.call_index, r.ok, r.epoch) for r in records] == [(0, True, 7), (1, True, 7)]
    first_key = idempotency_key("run-1", "echoer", "test.echo", 0, {"value": {"n": 1}})
    assert records[0].key == first_key
    assert '"key":"' + first_key in (records[0].result or "")  # the tool received its key
    done = sent[-1]
    assert isinstance(done, CompleteTask)
    assert '"inputs":{"parser":{"text":"hi"}}' in done.output and '"model":"gpt-x"' in done.output
    assert attempt.tool_runs == 2


def test_records_written_later_are_confirmed_before_the_next_tool_runs_and_behind_the_outcome() -> None:
    steps: list[str] = []

    class Delivery:
        def __init__(self, record: RecordToolCall) -> None:
            self.index = record.call_index

        def wait(self) -> None:
            steps.append(f"confirmed {self.index}")

    def send_later(record: Any) -> Delivery:
        steps.append(f"written {record.call_index}")
        return Delivery(record)

    def send(command: Any) -> None:
        steps.append(type(command).__name__)

    attempt = Attempt(_assignment(), _agent(), REGISTRY, WorkerSettings(worker_id="w1"), send, {}.get,
                      threading.Event(), send_later=send_later)
    assert attempt.run() == "CompleteTask"
    # The second call (a side effect) waits for the first record; the completion does
    # not wait for the second: it is written behind it, then both are confirmed.
    assert steps == ["written 0", "confirmed 0", "written 1", "CompleteTask", "confirmed 1"]


def test_a_succeeded_call_in_the_journal_is_not_run_again() -> None:
    key = idempotency_key("run-1", "echoer", "test.echo", 0, {"value": {"n": 1}})
    recorded = canonical_json({"value": "from the journal", "key": key})
    sent, attempt = _run(_assignment((JournalEntry(key, "test.echo", 0, recorded),)))
    assert attempt.tool_runs == 1  # only the second call ran
    assert [r.call_index for r in sent if isinstance(r, RecordToolCall)] == [1]
    assert "from the journal" in sent[-1].output


def test_an_open_breaker_fails_fast_without_burning_the_retry_budget() -> None:
    now = 10**13
    state = BreakerState("test.echo", BreakerStatus.OPEN, 3, 3, 60_000, now - 1_000, now + 59_000)
    assert breaker_wait_ms(state, now) == 59_000
    assert breaker_wait_ms(BreakerState("test.echo", BreakerStatus.HALF_OPEN), now) is None
    sent, attempt = _run(_assignment(), {"test.echo": BreakerState("test.echo", BreakerStatus.OPEN, 3, 3, 60_000,
                                                                   10**13, 10**13 + 60_000)})
    assert attempt.tool_runs == 0
    failed = sent[-1]
    assert isinstance(failed, FailTask) and failed.kind is FailureKind.BREAKER_OPEN
    assert failed.retry_after_ms > 0


def test_an_open_breaker_takes_the_declared_fallback() -> None:
    open_state = BreakerState("test.echo", BreakerStatus.OPEN, 3, 3, 60_000, 10**13, 10**13 + 60_000)
    sent, _attempt = _run(_assignment(), {"test.echo": open_state}, _agent(fallback="test.fallback"))
    assert [r.tool for r in sent if isinstance(r, RecordToolCall)] == ["test.fallback", "test.fallback"]
    assert isinstance(sent[-1], CompleteTask) and "degraded" in sent[-1].output


def test_an_undeclared_tool_fails_the_task_without_retry() -> None:
    agent = AgentPlan("echoer", None, (), ())
    sent, _ = _run(_assignment(), agent=agent)
    assert isinstance(sent[-1], FailTask) and sent[-1].kind is FailureKind.NON_RETRYABLE


def test_a_stopping_worker_releases_the_lease_at_the_next_call() -> None:
    sent, attempt = _run(_assignment(), stopping=True)
    assert attempt.tool_runs == 0
    assert isinstance(sent[-1], ReleaseLease) and sent[-1].epoch == 7


# ---------------------------------------------------------------- async def agents

def _run_async(task: str, stopping: bool = False) -> tuple[list[Any], str]:
    sent: list[Any] = []
    stop = threading.Event()
    if stopping:
        stop.set()

    async def send(command: Any) -> None:
        sent.append(command)

    assignment = dataclasses.replace(_assignment(), task=task)
    attempt = Attempt(assignment, _agent(), REGISTRY, WorkerSettings(worker_id="w1"), sent.append, {}.get, stop)
    return sent, asyncio.run(attempt.run_async(send))


def test_an_async_agent_awaits_its_tool_calls_and_they_are_journaled_in_call_order() -> None:
    sent, outcome = _run_async("gatherer")
    assert outcome == "CompleteTask"
    records = [c for c in sent if isinstance(c, RecordToolCall)]
    # Gathered calls take their index when made and run one at a time in that order,
    # so a retry's journal answers the same call with the same index.
    assert [(r.call_index, json.loads(r.result or "")["value"]) for r in records] == [(0, "first"), (1, "second")]
    assert records[0].key == idempotency_key("run-1", "gatherer", "test.echo", 0, {"value": "first"})
    done = sent[-1]
    assert isinstance(done, CompleteTask) and '"inputs":{"parser":{"text":"hi"}}' in done.output


def test_an_async_agent_calling_the_blocking_call_tool_fails_without_retry_and_says_what_to_use() -> None:
    sent, outcome = _run_async("blocker")
    assert outcome == "FailTask"
    failed = sent[-1]
    assert isinstance(failed, FailTask) and failed.kind is FailureKind.NON_RETRYABLE
    assert "await ctx.call_tool_async" in failed.error
    assert not [c for c in sent if isinstance(c, RecordToolCall)]  # the tool never ran


def test_an_async_agent_of_a_stopping_worker_releases_the_lease_at_its_next_call() -> None:
    sent, outcome = _run_async("gatherer", stopping=True)
    assert outcome == "ReleaseLease"
    assert [type(c) for c in sent] == [ReleaseLease]
