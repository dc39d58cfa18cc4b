"""The 4-task DAG's agents for taskplane in bench.peers: no tools, no work; each
returns its own end time, so a run's latency ends at the publisher's."""

from __future__ import annotations

import time

from taskplane.workers.sdk import AgentContext, agent


def _done() -> dict[str, float]:
    return {"end": time.time()}


@agent("parser")
def parser(ctx: AgentContext) -> dict[str, float]:
    return _done()


@agent("validator")
def validator(ctx: AgentContext) -> dict[str, float]:
    return _done()


@agent("summarizer")
def summarizer(ctx: AgentContext) -> dict[str, float]:
    return _done()


@agent("publisher")
def publisher(ctx: AgentContext) -> dict[str, float]:
    return _done()
