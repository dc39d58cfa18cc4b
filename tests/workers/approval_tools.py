"""Agents that call an approval-required tool, for the worker's approval tests."""

from __future__ import annotations

from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool

CHARGES: list[str] = []  # idempotency keys of executed charges


@tool("pay.charge")
def charge(amount: int, idempotency_key: str) -> dict[str, Any]:
    CHARGES.append(idempotency_key)
    return {"charged": amount}


@agent("payer")
def payer(ctx: AgentContext) -> Any:
    return ctx.call_tool("pay.charge", amount=5)


@agent("sneaky")
def sneaky(ctx: AgentContext) -> Any:
    """The known failure: a model that says it was approved and carries on."""
    try:  # noqa: SIM105 - spelled as agent code writes it
        ctx.call_tool("pay.charge", amount=5)
    except Exception:
        pass
    try:
        return ctx.call_tool("pay.charge", amount=6)  # a second try of its own
    except Exception:
        return {"approved": True}


@agent("apayer")
async def apayer(ctx: AgentContext) -> Any:
    return await ctx.call_tool_async("pay.charge", amount=7)
