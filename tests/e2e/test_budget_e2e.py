"""Budgets on the real broker: two attempts of a run loop on a metered tool in parallel
and the run stops when its usage reaches its budget (RunFailed budget_exceeded with the
usage, at most one call started past it); a blocked tool never executes; the runs
index and the client show the usage (docs/governance.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskplane.client import Client
from taskplane.contract import messages as m
from taskplane.contract.governance import format_cost
from tests.e2e.e2e_pipeline import Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
TOOLS = str(Path(__file__).resolve().parent / "e2e_budget_tools.py")
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: thrifty}
spec:
  agents:
    - {name: thinker, model: small, tools: [llm.complete]}
    - {name: critic, model: small, tools: [llm.complete]}
  execution: {leaseTimeout: 5s, deadLetterTransition: false}
  policy: {maxTokensPerRun: 200, maxCostPerRun: "100", allowedModels: [small], blockedTools: [shell.exec]}
"""
BLOCKED = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: careful}
spec:
  agents:
    - {name: operator, tools: [shell.exec]}
  execution: {leaseTimeout: 5s, deadLetterTransition: false}
  policy: {blockedTools: [shell.exec]}
"""


def _failed(pipeline: Pipeline, run_id: str) -> m.RunFailed:
    pipeline.wait(lambda log: [e for e in log.events(m.RunFailed) if e.run_id == run_id], 60)
    (failed,) = [e for e in pipeline.log.events(m.RunFailed) if e.run_id == run_id]
    return failed


def test_a_run_is_stopped_by_its_budget_and_a_blocked_tool_never_runs(pipeline: Pipeline, tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    calls.touch()
    pipeline.env["BUDGET_CALLS"] = str(calls)
    plan = pipeline.define(MANIFEST)
    blocked_plan = pipeline.define(BLOCKED)
    pipeline.worker("w1", {"thrifty": TOOLS, "careful": TOOLS})
    pipeline.worker("w2", {"thrifty": TOOLS, "careful": TOOLS})
    run_id = pipeline.publisher.submit_run(plan, {})
    blocked_id = pipeline.publisher.submit_run(blocked_plan, {})
    pipeline.publisher.flush()

    stop = _failed(pipeline, run_id)
    assert stop.reason == "budget_exceeded"
    assert stop.tokens >= 200
    executed = [line for line in calls.read_text().splitlines() if line.startswith(run_id)]
    # 2 x 5 tokens reported by the agents, then 10 a call: 19 calls reach 200; the
    # attempt that did not make the crossing call may have one call running then.
    assert 19 <= len(executed) <= 20, executed
    recorded = [e for e in pipeline.log.events(m.ToolCallSucceeded) if e.run_id == run_id]
    assert sum(u.tokens for e in recorded for u in e.usage) >= 190

    refused = _failed(pipeline, blocked_id)
    assert "tool_blocked" in refused.reason
    assert "shell.exec" not in calls.read_text()

    with Client(str(pipeline.kafka["bootstrap.servers"]), topic_prefix=pipeline.topics.prefix) as client:
        info = client.run(run_id).status()
    assert (info.status, info.reason) == ("failed", "budget_exceeded")
    assert (info.tokens, info.cost) == (stop.tokens, format_cost(stop.cost_micros))
