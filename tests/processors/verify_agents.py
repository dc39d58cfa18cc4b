"""Agents of the two examples (document-pipeline, payment-processor) for recording the
fixture logs ``taskplane verify`` is tested on (``scripts/record_verify_logs.py``).

The DAGs and policies are the examples' manifests; the agent bodies are small and
deterministic, and fail or stall when the run input asks, so a recording has the
retries, dead letters, lease expiries and cancellations it needs:
``{"fail": {"validator": 2}}`` fails the first two attempts of ``validator``,
``{"sleep": {"parser": 30}}`` makes parser's first attempt wait (the recorder kills
the worker or cancels the run meanwhile).
"""

from __future__ import annotations

import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


def _faults(ctx: AgentContext) -> None:
    wanted = ctx.run_input if isinstance(ctx.run_input, dict) else {}
    if ctx.attempt <= int(wanted.get("fail", {}).get(ctx.task, 0)):
        raise RuntimeError(f"{ctx.task}: failing attempt {ctx.attempt} as asked")
    pause = float(wanted.get("sleep", {}).get(ctx.task, 0))
    if pause and ctx.attempt == 1:
        time.sleep(pause)


# ---------------------------------------------------------------- document-pipeline


@tool("document.extract")
def extract(folder: str) -> list[str]:
    return [f"{folder}/a.txt"]


@tool("schema.validate")
def validate(document: str) -> bool:
    return True


@tool("text.summarize")
def summarize(text: str) -> str:
    return text[:10]


@tool("database.store")
def store(key: str, idempotency_key: str) -> str:
    return idempotency_key[:8]


@agent("parser")
def parser(ctx: AgentContext) -> dict[str, Any]:
    _faults(ctx)
    return {"documents": ctx.call_tool("document.extract", folder="docs")}


@agent("validator")
def validator(ctx: AgentContext) -> bool:
    _faults(ctx)
    return True


@agent("summarizer")
def summarizer(ctx: AgentContext) -> str:
    _faults(ctx)
    return "short"


@agent("publisher")
def publisher(ctx: AgentContext) -> str:
    _faults(ctx)
    return str(ctx.call_tool("database.store", key=ctx.run_id))


# ---------------------------------------------------------------- payment-processor


@tool("stripe.charge")
def charge(amount: int, customer: str, idempotency_key: str) -> dict[str, Any]:
    return {"id": f"ch_{idempotency_key[:8]}", "amount": amount}


@tool("ledger.record")
def record(charge_id: str) -> str:
    return f"entry-{charge_id}"


@agent("payment-processor")
def payment_processor(ctx: AgentContext) -> dict[str, Any]:
    order = ctx.run_input if isinstance(ctx.run_input, dict) else {}
    paid = ctx.call_tool("stripe.charge", amount=int(order.get("amount", 1)), customer=str(order.get("customer")))
    _faults(ctx)  # after the charge: a retry finds it in the journal and does not charge again
    return {"charge": paid["id"], "ledger": ctx.call_tool("ledger.record", charge_id=paid["id"])}
