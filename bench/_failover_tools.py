"""The agent bench.failover runs: one tool call that sleeps on the first attempt only
(the retry after a takeover finishes at once)."""

from __future__ import annotations

import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("bench.sleep")
def sleep(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


@agent("sleeper")
def sleeper(ctx: AgentContext) -> dict[str, Any]:
    seconds = float(ctx.run_input["seconds"]) if ctx.attempt == 1 else 0.0
    result: dict[str, Any] = ctx.call_tool("bench.sleep", seconds=seconds)
    return result
