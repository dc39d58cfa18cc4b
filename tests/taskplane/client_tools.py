"""Agents of the client tests' systems (loaded by a worker process by path)."""

from __future__ import annotations

import time
from typing import Any

from taskplane import AgentContext, agent, tool


@tool("text.upper")
def upper(text: str) -> str:
    return text.upper()


@tool("clock.sleep")
def sleep(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"slept": seconds}


@tool("always.fail")
def always_fail(what: str) -> dict[str, Any]:
    raise RuntimeError(f"{what}: the dependency is down")


@agent("shout")
def shout(ctx: AgentContext) -> dict[str, Any]:
    return {"text": ctx.call_tool("text.upper", text=ctx.run_input["text"])}


@agent("count")
def count(ctx: AgentContext) -> dict[str, Any]:
    return {"text": ctx.inputs["shout"]["text"], "letters": len(ctx.inputs["shout"]["text"])}


@agent("nap")
def nap(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("clock.sleep", seconds=float(ctx.run_input["seconds"]))
    return result


@agent("doomed")
def doomed(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("always.fail", what="charge")
    return result
