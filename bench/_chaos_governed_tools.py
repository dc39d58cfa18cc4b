"""bench.chaos's governed system (bench/_chaos_governance.py), loaded by the worker
processes by path: a metered model tool a run loops on until its budget stops it, and a
refund that waits for a person. Each real execution is appended to a file of this
process in $CHAOS_GOVERNED_DIR (tool, run, idempotency key, start and end in ms): the
checks count what really ran, not what the log says."""

from __future__ import annotations

import os
import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool

TOKENS_PER_CALL = 10
CALLS_WANTED = 40  # a budget run asks for this many; its budget allows far fewer


def _note(name: str, run_id: str, key: str, started_ms: float) -> None:
    path = os.path.join(os.environ["CHAOS_GOVERNED_DIR"], f"calls-{os.getpid()}.tsv")
    with open(path, "a") as file:  # one short line per call: one write, no interleaving
        file.write(f"{name}\t{run_id}\t{key}\t{started_ms:.3f}\t{time.time() * 1000:.3f}\n")


@tool("gov.model")
def model(run_id: str, step: int, idempotency_key: str) -> dict[str, Any]:
    started = time.time() * 1000
    time.sleep(0.01)
    _note("gov.model", run_id, idempotency_key, started)
    return {"result": {"step": step}, "taskplane_usage": {"tokens": TOKENS_PER_CALL, "cost": "0.001",
                                                          "model": "chaos-model"}}


@tool("gov.refund")
def refund(run_id: str, amount: int, idempotency_key: str) -> dict[str, Any]:
    _note("gov.refund", run_id, idempotency_key, time.time() * 1000)
    return {"refunded": amount}


@agent("governed")
def governed(ctx: AgentContext) -> dict[str, Any]:
    if ctx.run_input["mode"] == "refund":
        return dict(ctx.call_tool("gov.refund", run_id=ctx.run_id, amount=int(ctx.run_input["amount"])))
    steps = [ctx.call_tool("gov.model", run_id=ctx.run_id, step=i)["step"] for i in range(CALLS_WANTED)]
    return {"steps": len(steps)}
