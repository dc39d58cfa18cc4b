"""Tools and agents for the worker's governance tests: a metered model tool that counts
its executions, and agents that loop on it."""

from __future__ import annotations

from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool

EXECUTED: list[str] = []


@tool("model.call")
def model_call(prompt: str) -> dict[str, Any]:
    EXECUTED.append(prompt)
    return {"result": f"answer to {prompt}", "taskplane_usage": {"tokens": 10, "cost": "0.001", "model": "m1"}}


@tool("shell.exec")
def shell_exec(command: str) -> str:
    EXECUTED.append(f"shell:{command}")
    return "ran"


@agent("looper")
def looper(ctx: AgentContext) -> Any:
    answers = [ctx.call_tool("model.call", prompt=str(i)) for i in range(20)]
    return {"answers": answers}


@agent("reporter")
def reporter(ctx: AgentContext) -> Any:
    ctx.report_usage(tokens=7, cost="0.5", model="m1")
    return {"first": ctx.call_tool("model.call", prompt="a")}


@agent("sheller")
def sheller(ctx: AgentContext) -> Any:
    return ctx.call_tool("shell.exec", command="rm -rf /")
