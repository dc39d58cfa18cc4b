"""The 4-task DAG as a Restate service (restate-sdk), served by hypercorn:

    python -m hypercorn bench._peer_restate_app:app --bind 127.0.0.1:PORT

Each task is a durable step (``ctx.run``) doing nothing but returning its own end
time; validator and summarizer run at once. The handler returns the publisher's."""

from __future__ import annotations

import time

import restate

dag = restate.Service("Dag")


async def _noop() -> float:
    return time.time()


@dag.handler()
async def run(ctx: restate.Context, index: int) -> float:
    await ctx.run("parser", _noop)
    await restate.gather(ctx.run("validator", _noop), ctx.run("summarizer", _noop))
    return await ctx.run("publisher", _noop)


app = restate.app([dag])
