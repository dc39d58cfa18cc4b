"""The agent and tool of the rate-limit measurement (bench/_fairness_limits.py), loaded
by the worker processes by path: one call to a rate-limited tool that says when it ran."""

from __future__ import annotations

import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("bench.limited")
def limited(n: int) -> dict[str, Any]:
    started = time.time()
    time.sleep(0.01)  # a short call: the demand is far above the limit
    return {"started": started, "n": n}


@agent("caller")
def caller(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("bench.limited", n=int(ctx.run_input["n"]))
    return result
