"""A metered loop for the budget simulation: two agents call a model tool (10 tokens a
call) until the run's budget stops them; a third tries a blocked tool."""

from __future__ import annotations

from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("llm.step")
def step(i: int) -> dict[str, Any]:
    return {"result": i, "taskplane_usage": {"tokens": 10, "cost": "0.001", "model": "m"}}


@tool("shell.exec")
def shell() -> str:
    return "ran"


def _loop(ctx: AgentContext) -> list[int]:
    return [ctx.call_tool("llm.step", i=i) for i in range(30)]


@agent("a")
def a(ctx: AgentContext) -> list[int]:
    return _loop(ctx)


@agent("b")
def b(ctx: AgentContext) -> list[int]:
    return _loop(ctx)


@agent("c")
def c(ctx: AgentContext) -> str:
    return str(ctx.call_tool("shell.exec"))
