"""The 4-task DAG as a DBOS workflow (Postgres system database), started in the DBOS
process by a minimal ASGI endpoint under hypercorn:

    BENCH_DBOS_DATABASE_URL=postgresql://... python -m hypercorn bench._peer_dbos_app:app --bind 127.0.0.1:PORT

POST /runs with the run index starts a workflow and answers its id; GET /runs/<id>
waits for its result, the publisher's own end time. Steps do nothing but return their
end time; validator and summarizer run at once."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dbos import DBOS

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@DBOS.step()
async def parser() -> float:
    return time.time()


@DBOS.step()
async def validator() -> float:
    return time.time()


@DBOS.step()
async def summarizer() -> float:
    return time.time()


@DBOS.step()
async def publisher() -> float:
    return time.time()


@DBOS.workflow()
async def dag(index: int) -> float:
    await parser()
    await asyncio.gather(validator(), summarizer())
    return await publisher()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            DBOS(config={"name": "bench-dag", "system_database_url": os.environ["BENCH_DBOS_DATABASE_URL"],
                         "log_level": "WARNING"})
            DBOS.launch()
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            DBOS.destroy()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _answer(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if scope["method"] == "POST" and path == "/runs":
        handle = await DBOS.start_workflow_async(dag, int(json.loads(body)))
        await _answer(send, 200, handle.get_workflow_id())
    elif scope["method"] == "GET" and path.startswith("/runs/"):
        handle = await DBOS.retrieve_workflow_async(path.removeprefix("/runs/"))
        await _answer(send, 200, await handle.get_result())
    elif path == "/health":
        await _answer(send, 200, "ok")
    else:
        await _answer(send, 404, f"no route {scope['method']} {path}")
