"""Tools and agents of the budget end-to-end test: two agents loop on a metered tool
(10 tokens a call); one first tries a tool the policy blocks. Every execution appends
a line to $BUDGET_CALLS, so the test counts what really ran."""

from __future__ import annotations

import os
import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


def _note(line: str) -> None:
    with open(os.environ["BUDGET_CALLS"], "a") as file:
        file.write(line + "\n")


@tool("llm.complete")
def complete(run_id: str, task: str, step: int) -> dict[str, Any]:
    time.sleep(0.02)
    _note(f"{run_id} {task} llm.complete {step}")
    return {"result": step, "taskplane_usage": {"tokens": 10, "cost": "0.01", "model": "small"}}


@tool("shell.exec")
def shell(run_id: str) -> str:
    _note(f"{run_id} - shell.exec")
    return "ran"


def _loop(ctx: AgentContext) -> dict[str, Any]:
    ctx.report_usage(tokens=5, cost="0.005")  # the agent's own model call, before the loop
    return {"steps": [ctx.call_tool("llm.complete", run_id=ctx.run_id, task=ctx.task, step=i) for i in range(50)]}


@agent("thinker")
def thinker(ctx: AgentContext) -> dict[str, Any]:
    return _loop(ctx)


@agent("critic")
def critic(ctx: AgentContext) -> dict[str, Any]:
    return _loop(ctx)


@agent("operator")
def operator(ctx: AgentContext) -> str:
    return str(ctx.call_tool("shell.exec", run_id=ctx.run_id))
