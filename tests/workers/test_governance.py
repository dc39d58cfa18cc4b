"""The worker's checks before a call (workers/governance.py): usage in the documented
form and from ``ctx.report_usage`` travels with the records, a call past the run's
budget or to a blocked tool is refused before it runs, a model not allowed never runs
the agent."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from taskplane.contract.governance import PolicyPlan, Usage, format_cost, parse_cost
from taskplane.contract.messages import (
    Assignment,
    CompleteTask,
    FailTask,
    FailureKind,
    RecordToolCall,
)
from taskplane.contract.plan import AgentPlan, Isolation, ToolPlan
from taskplane.workers.attempt import Attempt
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings
from tests.workers import governed_tools

REGISTRY = Registry.from_module(governed_tools)
TOOLS = (ToolPlan("model.call", 2_000, 0, Isolation.NONE, 3, 1_000),
         ToolPlan("shell.exec", 2_000, 0, Isolation.NONE, 3, 1_000))


def _run(task: str, policy: PolicyPlan | None, *, run_tokens: int = 0, model: str = "m1",
         stopped: bool = False) -> list[Any]:
    governed_tools.EXECUTED.clear()
    assignment = Assignment("w1", "run-1", task, 1, True, None, 1, 0, 3_000, "sys", model, "{}", {}, (),
                            TOOLS, policy=policy, run_tokens=run_tokens)
    sent: list[Any] = []
    Attempt(assignment, AgentPlan(task, model, TOOLS, ()), REGISTRY, WorkerSettings(worker_id="w1"),
            sent.append, lambda _tool: None, threading.Event(), run_stopped=lambda _run: stopped).run()
    return sent


def test_usage_returned_by_a_tool_is_recorded_and_stripped_from_the_result() -> None:
    sent = _run("reporter", None)
    record, complete = sent
    assert isinstance(record, RecordToolCall) and isinstance(complete, CompleteTask)
    # the agent's own report rides on the next record, the tool's with it
    assert record.usage == (Usage("m1", 7, 500_000), Usage("m1", 10, 1_000))
    assert record.result == '"answer to a"'
    assert complete.usage == ()


def test_a_call_past_the_budget_is_refused_not_executed() -> None:
    sent = _run("looper", PolicyPlan(max_tokens=100), run_tokens=40)
    assert len(governed_tools.EXECUTED) == 6  # 40 + 6 * 10 reaches 100: the 7th is refused
    failed = sent[-1]
    assert isinstance(failed, FailTask) and failed.kind is FailureKind.NON_RETRYABLE
    assert failed.error.startswith("budget_exceeded")
    assert sum(u.tokens for c in sent for u in c.usage) == 60


def test_a_run_the_orchestrator_stopped_runs_no_more_calls() -> None:
    sent = _run("looper", PolicyPlan(max_tokens=1_000), stopped=True)
    assert governed_tools.EXECUTED == []
    assert isinstance(sent[-1], FailTask) and sent[-1].error.startswith("run_stopped")


def test_a_blocked_tool_never_executes() -> None:
    sent = _run("sheller", PolicyPlan(blocked_tools=("shell.exec",)))
    assert governed_tools.EXECUTED == []
    (failed,) = sent
    assert isinstance(failed, FailTask) and failed.kind is FailureKind.NON_RETRYABLE
    assert failed.error.startswith("tool_blocked")


def test_a_model_not_allowed_never_runs_the_agent() -> None:
    sent = _run("looper", PolicyPlan(allowed_models=("m2",)))
    assert governed_tools.EXECUTED == []
    (failed,) = sent
    assert isinstance(failed, FailTask) and failed.error.startswith("model_not_allowed")


def test_costs_are_micro_units_inside_and_decimal_strings_outside() -> None:
    assert parse_cost("0.25") == 250_000 and parse_cost("12") == 12_000_000
    assert format_cost(250_000) == "0.25" and format_cost(12_000_000) == "12" and format_cost(1) == "0.000001"
    for bad in ("-1", "abc", "0.0000001", "NaN", True, None):
        with pytest.raises(ValueError):
            parse_cost(bad)
