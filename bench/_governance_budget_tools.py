"""Agents and tools of the budget measure: two agents of one run loop on a metered
"model" tool (each call 10 tokens, 0.001 units), a third calls a tool the policy blocks.
Every execution is appended to a file of this process in $BENCH_GOVERNANCE_DIR (run,
task, tool, start and end in ns): the measure counts what really ran."""

from __future__ import annotations

import os
import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool

TOKENS_PER_CALL = 10
CALLS_PER_AGENT = 40
CALL_S = 0.03


def _note(run_id: str, task: str, name: str, started: int) -> None:
    path = os.path.join(os.environ["BENCH_GOVERNANCE_DIR"], f"calls-{os.getpid()}.tsv")
    with open(path, "a") as file:  # one short line a call: appends of one write do not interleave
        file.write(f"{run_id}\t{task}\t{name}\t{started}\t{time.time_ns()}\n")


@tool("bench.model")
def model(run_id: str, task: str, step: int) -> dict[str, Any]:
    started = time.time_ns()
    time.sleep(CALL_S)
    _note(run_id, task, "bench.model", started)
    return {"result": {"step": step}, "taskplane_usage": {"tokens": TOKENS_PER_CALL, "cost": "0.001",
                                                          "model": "bench-model"}}


@tool("bench.shell")
def shell(run_id: str, task: str) -> str:
    _note(run_id, task, "bench.shell", time.time_ns())
    return "ran"


def _loop(ctx: AgentContext) -> dict[str, Any]:
    if ctx.run_input.get("blocked") and ctx.task == "left":
        ctx.call_tool("bench.shell", run_id=ctx.run_id, task=ctx.task)
    steps = [ctx.call_tool("bench.model", run_id=ctx.run_id, task=ctx.task, step=i)["step"]
             for i in range(CALLS_PER_AGENT)]
    return {"steps": len(steps)}


@agent("left")
def left(ctx: AgentContext) -> dict[str, Any]:
    return _loop(ctx)


@agent("right")
def right(ctx: AgentContext) -> dict[str, Any]:
    return _loop(ctx)
