"""The agent of the fairness e2e test: one tool call that sleeps the run's input."""

from __future__ import annotations

import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("fair.work")
def work(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


@agent("step")
def step(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("fair.work", seconds=float(ctx.run_input["seconds"]))
    return result
