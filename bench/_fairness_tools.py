"""The agent bench.fairness runs: one short tool call (a model call stand-in)."""

from __future__ import annotations

import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("bench.work")
def work(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


@agent("step")
def step(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("bench.work", seconds=float(ctx.run_input["seconds"]))
    return result
