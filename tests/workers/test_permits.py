"""The worker's side of the tool governor: a limited call asks for a permit and waits;
an unlimited one never asks. The governor here is a plain callable that answers as the
breaker processor would (its decisions are tested in tests/processors/test_permits.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest

from taskplane.contract.messages import (
    Assignment,
    CompleteTask,
    FailTask,
    FailureKind,
    RecordToolCall,
)
from taskplane.contract.permits import AcquirePermit, PermitDenied, PermitGranted
from taskplane.contract.plan import AgentPlan, Isolation, ToolPlan
from taskplane.metrics import PermitCollector
from taskplane.processors.breaker.permits import HOLD_GRACE_MS
from taskplane.workers.attempt import Attempt
from taskplane.workers.exceptions import WorkerStopping
from taskplane.workers.permits import Permits
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from tests.workers import sample_tools

REGISTRY = Registry.from_module(sample_tools)
ASSIGNMENT = Assignment("w1", "run-1", "echoer", 2, True, None, 7, 0, 3_000, "sys", "gpt-x", '{"n": 1}',
                        {"parser": '{"text": "hi"}'}, ())
LIMITED = ToolPlan("test.echo", 2_000, 0, Isolation.NONE, 3, 1_000, rate_limit=100, rate_period_ms=60_000,
                   concurrency=20)


def grant(request: AcquirePermit, granted_ms: int | None = None) -> PermitGranted:
    """The governor's grant, made now unless ``granted_ms`` says when (its log time)."""
    at = int(time.time() * 1000) if granted_ms is None else granted_ms
    return PermitGranted(request.tool, request.key, request.try_no, request.worker_id, request.run_id,
                         request.task, request.epoch, at, at + request.hold_ms + HOLD_GRACE_MS, True)


class Governor:
    """Answers each request on another thread, after ``hold`` requests were seen."""

    def __init__(self, answer: Any = grant, hold: int = 1) -> None:
        self.requests: list[AcquirePermit] = []
        self.permits = Permits(self.send, resend_s=0.3)
        self._answer = answer
        self._hold = hold

    def send(self, request: AcquirePermit) -> None:
        self.requests.append(request)
        if len(self.requests) >= self._hold and self._answer is not None:
            answer = self._answer(request)
            threading.Timer(0.05, self.permits.deliver, (answer,)).start()


def attempt(agent_tools: tuple[ToolPlan, ...], governor: Governor) -> tuple[list[Any], Attempt]:
    sent: list[Any] = []
    agent = AgentPlan("echoer", "gpt-x", (*agent_tools, ToolPlan("test.fallback", 2_000, 0, Isolation.NONE, 3, 1)),
                      ("parser",))
    run = Attempt(ASSIGNMENT, agent, REGISTRY, WorkerSettings(worker_id="w1"), sent.append, {}.get,
                  threading.Event(), permits=governor.permits)
    run.run()
    return sent, run


def test_a_limited_call_waits_for_its_permit_then_runs() -> None:
    governor = Governor(hold=2)  # the first request goes unanswered: the worker asks again
    sent, run = attempt((LIMITED,), governor)
    assert isinstance(sent[-1], CompleteTask) and run.tool_runs == 2
    first = governor.requests[0]
    assert (first.tool, first.worker_id, first.epoch, first.rate_limit, first.rate_period_ms, first.concurrency,
            first.hold_ms) == ("test.echo", "w1", 7, 100, 60_000, 20, 2_000)
    records = [c for c in sent if isinstance(c, RecordToolCall)]
    assert {r.key for r in records} == {r.key for r in governor.requests}  # the outcome names the permit
    assert governor.permits.granted["test.echo"] == 2 and governor.permits.waiting["test.echo"] == 0


def test_a_tool_without_limits_never_asks() -> None:
    governor = Governor()
    sent, _ = attempt((dataclasses.replace(LIMITED, rate_limit=0, rate_period_ms=0, concurrency=0),), governor)
    assert isinstance(sent[-1], CompleteTask) and governor.requests == []


def test_an_open_breaker_fails_the_call_as_the_breaker_does_burning_no_retry() -> None:
    def deny(request: AcquirePermit) -> PermitDenied:
        return PermitDenied(request.tool, request.key, request.try_no, request.worker_id, request.run_id,
                            request.task, request.epoch, "breaker open", 4_000)

    sent, run = attempt((LIMITED,), Governor(deny))
    failure = sent[-1]
    assert isinstance(failure, FailTask) and failure.kind is FailureKind.BREAKER_OPEN
    assert failure.retry_after_ms == 4_000 and run.tool_runs == 0


def test_waiting_counts_and_ends_on_shutdown() -> None:
    governor = Governor(answer=None)
    stopping = threading.Event()
    collector = PermitCollector(lambda: governor.permits)
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            governor.permits.acquire(ASSIGNMENT, LIMITED, "k", 0, stopping)
        except BaseException as error:
            outcome.append(error)

    waiter = threading.Thread(target=wait)
    waiter.start()
    while not governor.requests:
        threading.Event().wait(0.01)
    families = {f.name: f for f in collector.collect()}
    assert [s.value for s in families["taskplane_tool_calls_waiting_for_permit"].samples] == [1]
    stopping.set()
    waiter.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], WorkerStopping)
    assert governor.permits.waiting["test.echo"] == 0


def test_an_answer_for_another_attempt_is_not_taken() -> None:
    stale = Governor(lambda r: dataclasses.replace(grant(r), epoch=r.epoch - 1), hold=1)
    stopping = threading.Event()
    threading.Timer(1.0, stopping.set).start()
    with pytest.raises(WorkerStopping):
        stale.permits.acquire(ASSIGNMENT, LIMITED, "k", 0, stopping)
    assert len(stale.requests) >= 2  # it kept asking for its own


def test_an_async_agents_limited_calls_wait_off_the_loop() -> None:
    import asyncio

    governor = Governor(hold=2)
    sent: list[Any] = []

    async def send(command: Any) -> None:
        sent.append(command)

    agent = AgentPlan("gatherer", "gpt-x", (LIMITED,), ("parser",))
    assignment = dataclasses.replace(ASSIGNMENT, task="gatherer")
    run = Attempt(assignment, agent, REGISTRY, WorkerSettings(worker_id="w1"), sent.append, {}.get,
                  threading.Event(), permits=governor.permits)
    assert asyncio.run(run.run_async(send)) == "CompleteTask"
    assert len({(r.key, r.try_no) for r in governor.requests}) == 2 and run.tool_runs == 2


def test_a_denial_for_an_open_breaker_takes_the_tools_fallback() -> None:
    def deny(request: AcquirePermit) -> PermitDenied:
        return PermitDenied(request.tool, request.key, request.try_no, request.worker_id, request.run_id,
                            request.task, request.epoch, "breaker open", 4_000)

    sent, run = attempt((dataclasses.replace(LIMITED, fallback="test.fallback"),), Governor(deny))
    done = sent[-1]
    assert isinstance(done, CompleteTask) and '"degraded":true' in done.output
    records = [c for c in sent if isinstance(c, RecordToolCall)]
    assert {r.tool for r in records} == {"test.fallback"} and run.tool_runs == 2


def test_two_attempts_of_one_call_on_one_worker_each_get_their_own_permit() -> None:
    """A lease expired while its attempt still ran, and the retry came to the same worker:
    both wait for a permit for the same call (same key, same try). Each answer reaches
    its own attempt. (Keyed by call alone, the second box replaced the first and the
    first one's end removed it: in a chaos run the retry waited for 2 minutes while
    the governor granted its permit every 15 s.)"""
    sent: list[AcquirePermit] = []
    permits = Permits(sent.append, resend_s=30)
    stopping = threading.Event()
    done: dict[int, object] = {}

    def wait(epoch: int) -> None:
        try:
            permits.acquire(dataclasses.replace(ASSIGNMENT, epoch=epoch), LIMITED, "call-1", 0, stopping)
            done[epoch] = "granted"
        except WorkerStopping:
            done[epoch] = "still waiting at the end"

    old, new = threading.Thread(target=wait, args=(1,)), threading.Thread(target=wait, args=(2,))
    try:
        old.start()
        _until(lambda: len(sent) == 1)
        new.start()
        _until(lambda: len(sent) == 2)
        permits.deliver(grant(sent[0]))  # the old attempt's answer comes first
        old.join(5)
        permits.deliver(grant(sent[1]))
        new.join(5)
    finally:
        stopping.set()
        old.join(5)
        new.join(5)
    assert [r.epoch for r in sent] == [1, 2]
    assert done == {1: "granted", 2: "granted"}, done


def _until(condition: Any, timeout_s: float = 5.0) -> None:
    stop = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        stop.wait(0.01)
    raise AssertionError("condition not met in time")


def test_a_grant_delivered_too_late_to_call_under_it_is_asked_again() -> None:
    """A grant made before a broker outage and delivered after it: the governor may have
    expired it meanwhile and given its place to another call (bench.chaos: five calls at
    once under a concurrency of four). The call does not start under it; it asks again,
    and runs under the answer to that (the governor renews a permit it still holds)."""
    late = int(time.time() * 1000) - HOLD_GRACE_MS  # the call's 2 s would outlive its expiry by 1 s
    governor = Governor(lambda request: grant(request, late if len(governor.requests) == 1 else None))
    sent, run = attempt((LIMITED,), governor)
    # The agent's two calls: the first asked twice (the late grant, then a fresh one).
    assert [r.key for r in governor.requests].count(governor.requests[0].key) == 2
    assert len(governor.requests) == 3 and run.tool_runs == 2
    assert isinstance(sent[-1], CompleteTask) and governor.permits.granted["test.echo"] == 2
