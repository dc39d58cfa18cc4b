"""Agents and tools of the runbook end-to-end tests (loaded by worker processes by
path). Every real execution of a tool appends a line to a file in the run's
``dir``, so a test can count executions; ``ops.flaky`` fails while ``dir/broken``
exists (the operator's "fix" deletes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskplane.workers.sdk import AgentContext, agent, tool


def _count(directory: str, name: str) -> None:
    with open(Path(directory) / f"{name}.count", "a") as out:
        out.write("x\n")


def executions(directory: str | Path, name: str) -> int:
    path = Path(directory) / f"{name}.count"
    return len(path.read_text().splitlines()) if path.exists() else 0


@tool("ops.step")
def step(dir: str, label: str) -> dict[str, Any]:  # noqa: A002 - the manifest's argument name
    _count(dir, label)
    return {"step": label}


@tool("ops.flaky")
def flaky(dir: str) -> dict[str, Any]:  # noqa: A002
    if (Path(dir) / "broken").exists():
        raise RuntimeError("ops.flaky: credentials revoked (broken)")
    _count(dir, "flaky")
    return {"flaky": "ok"}


@agent("gather")
def gather(ctx: AgentContext) -> dict[str, Any]:
    directory = ctx.run_input["dir"]
    ctx.call_tool("ops.step", dir=directory, label="gather")
    return {"gathered": True}


@agent("crunch")
def crunch(ctx: AgentContext) -> dict[str, Any]:
    directory = ctx.run_input["dir"]
    ctx.call_tool("ops.step", dir=directory, label="crunch-before")
    ctx.call_tool("ops.flaky", dir=directory)
    return {"crunched": True}


@agent("report")
def report(ctx: AgentContext) -> dict[str, Any]:
    directory = ctx.run_input["dir"]
    ctx.call_tool("ops.step", dir=directory, label="report")
    return {"reported": True}
