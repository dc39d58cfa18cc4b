"""The worker's side of approvals (``workers/approvals.py``): an approval-required call
the journal does not answer ends the attempt with a ``RequestApproval`` and runs
nothing; a granted one runs once; agent code cannot get past the wait."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from typing import Any

import pytest

from taskplane.contract.messages import Assignment, CompleteTask, JournalEntry, RequestApproval
from taskplane.contract.plan import AgentPlan, Isolation, ToolPlan
from taskplane.workers.approvals import drop_approval_key
from taskplane.workers.attempt import Attempt
from taskplane.workers.journal import canonical_json, idempotency_key
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from tests.workers import approval_tools

REGISTRY = Registry.from_module(approval_tools)
CHARGE = ToolPlan("pay.charge", 2_000, 0, Isolation.NONE, 3, 1_000, approval_required=True, operation="write")


def _assignment(task: str, granted: tuple[str, ...] = (), journal: tuple[JournalEntry, ...] = ()) -> Assignment:
    return Assignment("w1", "run-1", task, 1, True, None, 4, 0, 3_000, "sys", None, "{}", {}, journal,
                      (CHARGE,), granted)


def _attempt(assignment: Assignment) -> tuple[list[Any], Attempt]:
    sent: list[Any] = []
    agent = AgentPlan(assignment.task, None, (CHARGE,), ())
    return sent, Attempt(assignment, agent, REGISTRY, WorkerSettings(worker_id="w1"), sent.append, lambda _: None,
                         threading.Event())


def _key(task: str, amount: int) -> str:
    return idempotency_key("run-1", task, "pay.charge", 0, {"amount": amount})


@pytest.fixture(autouse=True)
def _no_charges() -> None:
    approval_tools.CHARGES.clear()


def test_an_ungranted_call_asks_and_runs_nothing() -> None:
    sent, attempt = _attempt(_assignment("payer"))
    assert attempt.run() == "RequestApproval"
    assert approval_tools.CHARGES == [] and attempt.tool_runs == 0
    (request,) = sent
    assert isinstance(request, RequestApproval)
    assert (request.key, request.tool, request.epoch, request.input_preview) == (
        _key("payer", 5), "pay.charge", 4, '{"amount":5}')


def test_a_granted_call_runs_once_and_a_ran_one_is_answered_by_the_journal() -> None:
    key = _key("payer", 5)
    sent, attempt = _attempt(_assignment("payer", granted=(key,)))
    assert attempt.run() == "CompleteTask"
    assert len(approval_tools.CHARGES) == 1 and approval_tools.CHARGES[0] == key
    done = _assignment("payer", granted=(key,), journal=(JournalEntry(key, "pay.charge", 0,
                                                                       canonical_json({"charged": 5})),))
    sent, attempt = _attempt(done)
    assert attempt.run() == "CompleteTask"
    assert len(approval_tools.CHARGES) == 1 and approval_tools.CHARGES[0] == key  # not again


def test_agent_code_that_swallows_the_wait_still_ends_asking() -> None:
    sent, attempt = _attempt(_assignment("sneaky"))
    assert attempt.run() == "RequestApproval"
    assert approval_tools.CHARGES == []
    assert not [c for c in sent if isinstance(c, CompleteTask)]  # its {approved: true} goes nowhere
    assert [c.key for c in sent if isinstance(c, RequestApproval)] == [_key("sneaky", 5)]


def test_an_async_agent_asks_too() -> None:
    sent, attempt = _attempt(_assignment("apayer"))

    async def send(command: Any) -> None:
        sent.append(command)

    assert asyncio.run(attempt.run_async(send)) == "RequestApproval"
    assert approval_tools.CHARGES == []


def test_a_call_queued_behind_the_one_that_asked_does_not_run() -> None:
    free = ToolPlan("pay.free", 2_000, 0, Isolation.NONE, 3, 1_000)
    slow = ToolPlan("pay.slow", 2_000, 0, Isolation.NONE, 3, 1_000)
    assignment = dataclasses.replace(_assignment("agather"), tools=(CHARGE, free, slow))
    sent: list[Any] = []
    attempt = Attempt(assignment, AgentPlan("agather", None, (CHARGE, free, slow), ()), REGISTRY,
                      WorkerSettings(worker_id="w1"), sent.append, lambda _: None, threading.Event())

    async def send(command: Any) -> None:
        sent.append(command)

    async def on_a_live_loop() -> str:  # a worker's loop outlives the attempt: the queued call gets its turn
        outcome = await attempt.run_async(send)
        for _ in range(50):
            await asyncio.sleep(0.01)
        return outcome

    assert asyncio.run(on_a_live_loop()) == "RequestApproval"
    assert approval_tools.CHARGES == []


def test_a_worker_forgets_the_approval_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPLANE_APPROVAL_KEY", "secret")
    drop_approval_key()
    assert "TASKPLANE_APPROVAL_KEY" not in os.environ
