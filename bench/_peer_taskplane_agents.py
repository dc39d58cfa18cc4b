"""The 4-task DAG's agents for taskplane in bench.peers: no tools, no work; each
returns its own end time, so a run's latency ends at the publisher's. ``async def``,
like the Restate and DBOS handlers next to them: agent work is waiting on models and
APIs, which a worker runs on its event loop (a plain ``def`` agent runs on a thread)."""

from __future__ import annotations

import time

from taskplane.workers.sdk import AgentContext, agent


def _done() -> dict[str, float]:
    return {"end": time.time()}


@agent("parser")
async def parser(ctx: AgentContext) -> dict[str, float]:
    return _done()


@agent("validator")
async def validator(ctx: AgentContext) -> dict[str, float]:
    return _done()


@agent("summarizer")
async def summarizer(ctx: AgentContext) -> dict[str, float]:
    return _done()


@agent("publisher")
async def publisher(ctx: AgentContext) -> dict[str, float]:
    return _done()
