"""Tools and agents used by the worker tests (module level: isolated runs import them)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("test.echo")
def echo(value: Any, idempotency_key: str) -> dict[str, Any]:
    return {"value": value, "key": idempotency_key}


@tool("test.sleep")
def sleep_forever(seconds: float = 3600) -> str:
    time.sleep(seconds)
    return "woke"


@tool("test.allocate")
def allocate(gigabytes: int) -> int:
    block = bytearray(gigabytes * 2**30)
    return len(block)


@tool("test.env")
def environment() -> dict[str, str]:
    return dict(os.environ)


@tool("test.write_root")
def write_root(path: str) -> str:
    with open(path, "w") as handle:
        handle.write("escaped")
    return "written"


@tool("test.loop", wasm="spin.wat", export="spin", params=("n",))
def spin(n: int) -> int:
    return n


@tool("test.add", wasm="spin.wat", export="add", params=("a", "b"))
def add(a: int, b: int) -> int:
    return a + b


@agent("echoer")
def echoer(ctx: AgentContext) -> Any:
    first = ctx.call_tool("test.echo", value=ctx.run_input)
    second = ctx.call_tool("test.echo", value="again")
    return {"first": first, "second": second, "inputs": ctx.inputs, "model": ctx.model}


@tool("test.fallback")
def degraded(value: Any) -> dict[str, Any]:
    return {"value": value, "degraded": True}


@tool("test.connect", network=True)
def connect(port: int) -> str:
    """Asks for network in its code; whether it gets it is the manifest's call."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "connected"
    except OSError as error:
        return type(error).__name__


@agent("netter")
def netter(ctx: AgentContext) -> Any:
    return ctx.call_tool("test.connect", port=ctx.run_input["port"])


# ---------------------------------------------------------------- async def agents

ASYNC_THREADS: list[str] = []  # the thread each async attempt ran on, for the worker tests
_arrived: list[str] = []


@agent("gatherer")
async def gatherer(ctx: AgentContext) -> Any:
    ASYNC_THREADS.append(threading.current_thread().name)
    first, second = await asyncio.gather(ctx.call_tool_async("test.echo", value="first"),
                                         ctx.call_tool_async("test.echo", value="second"))
    return {"first": first, "second": second, "inputs": ctx.inputs}


@agent("blocker")
async def blocker(ctx: AgentContext) -> Any:
    return ctx.call_tool("test.echo", value="blocks the loop")


@agent("together")
async def together(ctx: AgentContext) -> Any:
    """Ends only once ``run_input`` attempts have started: they must run at once."""
    ASYNC_THREADS.append(threading.current_thread().name)
    _arrived.append(ctx.run_id)
    for _ in range(200):
        if len(_arrived) >= ctx.run_input:
            return len(_arrived)
        await asyncio.sleep(0.05)
    raise RuntimeError(f"only {len(_arrived)} of {ctx.run_input} attempts ran at once")


@agent("sleeper")
async def sleeper(ctx: AgentContext) -> Any:
    await asyncio.sleep(3600)
