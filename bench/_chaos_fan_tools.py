"""bench.chaos's fan system (bench/_chaos_fan.py), loaded by the worker processes by path:
a diamond (order → charge ‖ reserve → ship) whose every task performs one side effect.
Each real execution is appended to a file of this process in $CHAOS_FAN_DIR (task, run,
idempotency key, start and end in ms): the checks count what really ran and when, so a
task that started before one of its dependencies had ended would show."""

from __future__ import annotations

import os
import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("fan.effect")
def effect(run_id: str, task: str, idempotency_key: str) -> dict[str, Any]:
    started = time.time() * 1000
    time.sleep(0.002)
    path = os.path.join(os.environ["CHAOS_FAN_DIR"], f"effects-{os.getpid()}.tsv")
    with open(path, "a") as file:  # one short line per call: one write, no interleaving
        file.write(f"{task}\t{run_id}\t{idempotency_key}\t{started:.3f}\t{time.time() * 1000:.3f}\n")
    return {"task": task}


def _step(ctx: AgentContext) -> dict[str, Any]:
    return dict(ctx.call_tool("fan.effect", run_id=ctx.run_id, task=ctx.task))


@agent("order")
def order(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx)


@agent("charge")
def charge(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx)


@agent("reserve")
def reserve(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx)


@agent("ship")
def ship(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx)
