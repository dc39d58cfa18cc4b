"""The agent and tool of the poison end-to-end test (a module of their own: the
worker's registry takes every agent and tool a module defines)."""

from __future__ import annotations

from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("poison.echo")
def echo(value: Any) -> Any:
    return value


@agent("first")
def first(ctx: AgentContext) -> Any:
    return ctx.call_tool("poison.echo", value=ctx.run_input)


@agent("second")
def second(ctx: AgentContext) -> Any:
    return {"got": ctx.inputs["first"]}
