"""The JSON API: the pages' reads, and replay/cancel for scripts (bearer token).

    curl -H "Authorization: Bearer $TASKPLANE_UI_TOKEN" -X POST \\
         http://127.0.0.1:8080/api/runs/RUN/tasks/TASK/replay
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskplane.console import dag
from taskplane.console.commands import Outcome
from taskplane.console.errors import BadRequest
from taskplane.console.filters import parse_dead_letter_filter, parse_run_filter
from taskplane.console.pages import MAX_BULK, _console, _params
from taskplane.console.rendering import SECURITY_HEADERS


def _json(value: Any, status: int = 200) -> Response:
    return JSONResponse(value, status_code=status, headers=SECURITY_HEADERS)


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {"accepted": outcome.accepted, "message": outcome.message}


def overview(request: Request) -> Response:
    console = _console(request)
    return _json(console.queries.overview(console.now_ms()))


def runs(request: Request) -> Response:
    console = _console(request)
    where = parse_run_filter(_params(request), console.now_ms(), console.settings.page_size)
    rows, cursor = console.queries.runs(where)
    return _json({"runs": rows, "next": str(cursor) if cursor else None})


def run(request: Request) -> Response:
    return _json(_console(request).queries.run_page(request.path_params["run_id"]))


def dead_letters(request: Request) -> Response:
    console = _console(request)
    return _json({"dead_letters": console.queries.dead_letters(parse_dead_letter_filter(_params(request)))})


def dead_letter(request: Request) -> Response:
    console = _console(request)
    task = request.path_params["task"]
    data = console.queries.dead_letter(request.path_params["run_id"], task)
    return _json({**data, "unblocks": dag.unblocks(data["tasks"], task)})


def systems(request: Request) -> Response:
    console = _console(request)
    applied = console.systems.systems() if console.systems is not None else []
    return _json({"applied": applied, "seen": console.queries.systems_seen()})


def _writer(request: Request) -> None:
    _console(request).guard.require_writer(request, request.headers.get("x-csrf-token"))


async def replay(request: Request) -> Response:
    _writer(request)
    console = _console(request)
    outcome = await run_in_threadpool(console.commands.replay, request.path_params["run_id"],
                                      request.path_params["task"], "console-api")
    return _json(_outcome(outcome), 409 if outcome.accepted is False else 200)


async def bulk_replay(request: Request) -> Response:
    """Body: {"targets": ["RUN/TASK", ...]} (as listed by GET /api/dead-letters)."""
    _writer(request)
    console = _console(request)
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise BadRequest("body", "not JSON") from None
    targets = body.get("targets") if isinstance(body, dict) else None
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and "/" in t for t in targets):
        raise BadRequest("targets", 'a non-empty list of "RUN/TASK" strings')
    if len(targets) > MAX_BULK:
        raise BadRequest("targets", f"at most {MAX_BULK} at once")
    results = []
    for target in targets:
        run_id, _, task = target.partition("/")
        outcome = await run_in_threadpool(console.commands.replay, run_id, task, "console-api")
        results.append({"target": target, **_outcome(outcome)})
    return _json({"results": results})


async def cancel(request: Request) -> Response:
    _writer(request)
    console = _console(request)
    outcome = await run_in_threadpool(console.commands.cancel, request.path_params["run_id"],
                                      "cancelled from the console API")
    return _json(_outcome(outcome), 409 if outcome.accepted is False else 200)


def routes() -> list[Route]:
    return [
        Route("/api/overview", overview),
        Route("/api/runs", runs),
        Route("/api/runs/{run_id}", run),
        Route("/api/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/api/runs/{run_id}/tasks/{task}/replay", replay, methods=["POST"]),
        Route("/api/dead-letters", dead_letters),
        Route("/api/dead-letters/replay", bulk_replay, methods=["POST"]),
        Route("/api/dead-letters/{run_id}/{task}", dead_letter),
        Route("/api/systems", systems),
    ]
