"""The approval e2e's agent and tool (loaded by worker processes by path): a charge that
waits for a person, and that appends its key to a file each time it really runs."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("pay.charge")
def charge(amount: int, idempotency_key: str) -> dict[str, Any]:
    with open(os.environ["APPROVAL_CHARGES"], "a") as out:
        out.write(idempotency_key + "\n")
    return {"charged": amount}


@agent("payer")
def payer(ctx: AgentContext) -> dict[str, Any]:
    pause = Path(os.environ["APPROVAL_PAUSE"])
    if ctx.attempt > 1 and pause.exists():  # granted: stop between the grant and the call, to be killed
        pause.with_suffix(".reached").write_text(str(ctx.attempt))
        time.sleep(120)
    result: dict[str, Any] = ctx.call_tool("pay.charge", amount=int(ctx.run_input["amount"]))
    return result
