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


@agent("agather")
async def agather(ctx: AgentContext) -> Any:
    """Three calls at once: a slow one, then one that asks, then one queued behind it."""
    import asyncio

    return await asyncio.gather(ctx.call_tool_async("pay.slow", amount=7),
                                ctx.call_tool_async("pay.charge", amount=8),
                                ctx.call_tool_async("pay.free", amount=9))


@tool("pay.slow")
def slow(amount: int) -> dict[str, Any]:
    import time

    time.sleep(0.2)  # the other two calls are queued behind it by then
    return {"slow": amount}


@tool("pay.free")
def free(amount: int, idempotency_key: str) -> dict[str, Any]:
    CHARGES.append("free:" + idempotency_key)
    return {"free": amount}
