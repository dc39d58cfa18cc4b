"""Agents of the image test's system, mounted into the worker container at /agents."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


@tool("text.upper")
def upper(text: str) -> dict[str, Any]:
    return {"text": text.upper()}


@tool("gate.wait")
def gate_wait(markers: str, run_id: str, hold: bool) -> dict[str, Any]:
    folder = Path(markers)
    (folder / f"started-{run_id}").write_text("started\n")
    deadline = time.monotonic() + 120
    while hold and not (folder / "release").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return {"held": hold}


@agent("prepare")
def prepare(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("text.upper", text=str(ctx.run_input.get("text", "hello")))
    return result


@agent("finish")
def finish(ctx: AgentContext) -> dict[str, Any]:
    result: dict[str, Any] = ctx.call_tool("gate.wait", markers=str(ctx.run_input["markers"]),
                                           run_id=ctx.run_id, hold=bool(ctx.run_input.get("hold", False)))
    return result
