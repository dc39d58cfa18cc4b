"""Tools and agents used by the worker tests (module level: isolated runs import them)."""

from __future__ import annotations

import os
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
