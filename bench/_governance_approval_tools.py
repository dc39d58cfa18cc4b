"""The approvals bench's agent and tools (loaded by worker processes by path): a charge
that waits for a person, recording each real execution as ``key wall_ms``."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


def _charged(key: str, amount: int) -> dict[str, Any]:
    start_ms = time.time() * 1000
    with open(os.environ["BENCH_APPROVAL_CHARGES"], "a") as out:
        out.write(f"{key} {start_ms:.3f}\n")
    return {"charged": amount}


@tool("pay.charge")
def charge(amount: int, idempotency_key: str) -> dict[str, Any]:
    return _charged(idempotency_key, amount)


@tool("pay.quick")
def quick(amount: int, idempotency_key: str) -> dict[str, Any]:
    """The same charge with a short TTL: what nobody answers in time."""
    return _charged(idempotency_key, amount)


@agent("payer")
def payer(ctx: AgentContext) -> dict[str, Any]:
    pause = Path(os.environ["BENCH_APPROVAL_PAUSE"])
    if ctx.attempt > 1 and ctx.run_input.get("pause") and pause.exists():
        pause.with_suffix(".reached").write_text(str(ctx.attempt))  # granted, not yet called: kill me here
        time.sleep(300)
    result: dict[str, Any] = ctx.call_tool(ctx.run_input["tool"], amount=int(ctx.run_input["amount"]))
    return result
