"""Agents and tools of the end-to-end tests' own systems (loaded by worker processes
by path): a task that sleeps long enough to be killed, a tool that always fails."""

from __future__ import annotations

import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("clock.sleep")
def sleep(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


@tool("always.fail")
def always_fail(what: str) -> dict[str, Any]:
    raise RuntimeError(f"{what}: the dependency is down")


@agent("sleeper")
def sleeper(ctx: AgentContext) -> dict[str, Any]:
    # Only the first attempt is slow: the retry after a takeover finishes at once.
    seconds = float(ctx.run_input["seconds"]) if ctx.attempt == 1 else 0.0
    ctx.call_tool("clock.sleep", seconds=seconds)
    return {"done_by_attempt": ctx.attempt}


@agent("doomed")
def doomed(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("always.fail", what=ctx.run_input.get("what", "call"))
    return result


@tool("limited.work")
def limited_work(seconds: float, n: int = 0) -> dict[str, Any]:
    start = time.time()
    time.sleep(seconds)
    return {"start": start, "end": time.time()}


@agent("limited")
def limited(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("limited.work", seconds=float(ctx.run_input["seconds"]),
                                           n=int(ctx.run_input.get("n", 0)))
    return result
