"""Agents and the one tool of the pipeline benchmark's diamond: trivial work, so
the figures are taskplane's own overhead (claims, leases, journal, hand-offs)."""

from __future__ import annotations

from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("bench.echo")
def echo(value: str) -> dict[str, Any]:
    return {"value": value}


def _step(ctx: AgentContext, name: str) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("bench.echo", value=name)
    return {"step": name, "inputs": sorted(ctx.inputs), **result}


@agent("fetch")
def fetch(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx, "fetch")


@agent("left")
def left(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx, "left")


@agent("right")
def right(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx, "right")


@agent("join")
def join(ctx: AgentContext) -> dict[str, Any]:
    return _step(ctx, "join")
