"""The HTML pages: overview, runs, run, dead letters (with replay), systems, login."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from taskplane.console import dag, waterfall
from taskplane.console.approvals import WHO_COOKIE, who_cookie
from taskplane.console.context import Console, console_of
from taskplane.console.errors import BadRequest, ConsoleError, Forbidden
from taskplane.console.filters import parse_dead_letter_filter, parse_run_filter
from taskplane.console.security import SESSION_COOKIE, SESSION_MAX_AGE_S, check_csrf
from taskplane.contract.trace_ids import trace_id_hex

MAX_BULK = 500


def _console(request: Request) -> Console:
    return console_of(request)


def _params(request: Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    return params


def overview(request: Request) -> Response:
    console = _console(request)
    data = console.queries.overview(console.now_ms())
    hours = sorted({row["hour_ms"] for row in data["runs_per_hour"]})
    per_hour = {(row["hour_ms"], row["status"]): row["runs"] for row in data["runs_per_hour"]}
    peak = max((sum(per_hour.get((h, s), 0) for s in ("running", "succeeded", "failed", "cancelled"))
                for h in hours), default=0)
    return console.render.page(request, "overview.html", data=data, hours=hours, per_hour=per_hour, peak=peak,
                               now_ms=console.now_ms())


def _runs(request: Request) -> dict[str, Any]:
    console = _console(request)
    where = parse_run_filter(_params(request), console.now_ms(), console.settings.page_size)
    rows, cursor = console.queries.runs(where)
    raw = dict(request.query_params)
    return {"rows": rows, "where": where, "raw": raw,
            "next_query": where.query(cursor, raw) if cursor else None, "live_query": where.query(None, raw)}


def runs(request: Request) -> Response:
    return _console(request).render.page(request, "runs.html", **_runs(request))


def runs_fragment(request: Request) -> Response:
    return _console(request).render.page(request, "_runs_table.html", **_runs(request))


def _run(request: Request) -> dict[str, Any]:
    console = _console(request)
    data = console.queries.run_page(request.path_params["run_id"])
    for task in data["tasks"]:
        task["attempt_rows"] = [a for a in data["attempts"] if a["task"] == task["task"]]
        task["calls"] = [c for c in data["tool_calls"] if c["task"] == task["task"]]
        task["dead_letter"] = next((d for d in data["dead_letters"] if d["task"] == task["task"]), None)
    now_ms = console.now_ms()
    timeline = waterfall.svg(data["run"], data["tasks"], data["attempts"], data["tool_calls"], now_ms)
    trace = waterfall.trace_link(console.settings.trace_url, trace_id_hex(data["run"]["run_id"]))
    return {**data, "svg": dag.svg(data["tasks"]), "now_ms": now_ms, "waterfall": timeline, "trace_url": trace}


def run(request: Request) -> Response:
    return _console(request).render.page(request, "run.html", **_run(request))


def run_fragment(request: Request) -> Response:
    return _console(request).render.page(request, "_run_body.html", **_run(request))


def _dead_letters(request: Request, template: str) -> Response:
    console = _console(request)
    where = parse_dead_letter_filter(_params(request))
    return console.render.page(request, template, rows=console.queries.dead_letters(where), where=where)


def dead_letters(request: Request) -> Response:
    return _dead_letters(request, "dead_letters.html")


def dead_letters_fragment(request: Request) -> Response:
    return _dead_letters(request, "_dead_letters_table.html")


def dead_letter(request: Request) -> Response:
    console = _console(request)
    run_id, task = request.path_params["run_id"], request.path_params["task"]
    data = console.queries.dead_letter(run_id, task)
    return console.render.page(request, "dead_letter.html", **data, unblocks=dag.unblocks(data["tasks"], task),
                               downstream=dag.downstream(data["tasks"], task))


def replay_preview(request: Request) -> Response:
    """What replaying one task unblocks, then a confirmation form."""
    console = _console(request)
    run_id, task = request.path_params["run_id"], request.path_params["task"]
    data = console.queries.run_page(run_id)
    row = next((t for t in data["tasks"] if t["task"] == task), None)
    if row is None:
        raise BadRequest("task", f"run {run_id} has no task {task!r}")
    targets = [{"run_id": run_id, "task": task, "status": row["status"], "error": row["last_error"],
                "unblocks": dag.unblocks(data["tasks"], task)}]
    return console.render.page(request, "replay_preview.html", targets=targets, run=data["run"],
                               action=f"/runs/{run_id}/tasks/{task}/replay", bulk_query=None)


async def replay_one(request: Request) -> Response:
    console = _console(request)
    form = await request.form()
    console.guard.require_writer(request, _text(form.get("csrf")))
    run_id, task = request.path_params["run_id"], request.path_params["task"]
    outcome = await run_in_threadpool(console.commands.replay, run_id, task, "console")
    results = [{"run_id": run_id, "task": task, "outcome": outcome}]
    status = 409 if outcome.accepted is False else 200
    return console.render.page(request, "outcome.html", status=status, results=results, title="Replay")


def bulk_preview(request: Request) -> Response:
    console = _console(request)
    where = parse_dead_letter_filter(_params(request))
    rows = console.queries.dead_letters(where, limit=MAX_BULK)
    rows = [r for r in rows if r["status"] == "open"]
    tasks = console.queries.tasks_of(sorted({r["run_id"] for r in rows})) if rows else {}
    targets = [{"run_id": r["run_id"], "task": r["task"], "status": "dead_lettered", "error": r["error"],
                "unblocks": dag.unblocks(tasks.get(r["run_id"], []), r["task"])} for r in rows]
    return console.render.page(request, "replay_preview.html", targets=targets, run=None,
                               action="/dead-letters/replay", bulk_query=where.query())


async def bulk_replay(request: Request) -> Response:
    """Replays exactly the dead letters listed on the confirmation page (their ids are
    in the form), not whatever matches the filter by now."""
    console = _console(request)
    form = await request.form()
    console.guard.require_writer(request, _text(form.get("csrf")))
    targets = []
    for value in form.getlist("target"):
        run_id, _, task = _text(value).partition("/")
        if not run_id or not task:
            raise BadRequest("target", f"expected RUN/TASK, got {value!r}")
        targets.append((run_id, task))
    if not targets:
        raise BadRequest("target", "nothing to replay")
    if len(targets) > MAX_BULK:
        raise BadRequest("target", f"at most {MAX_BULK} at once")
    results = []
    for run_id, task in targets:
        outcome = await run_in_threadpool(console.commands.replay, run_id, task, "console")
        results.append({"run_id": run_id, "task": task, "outcome": outcome})
    return console.render.page(request, "outcome.html", results=results, title="Bulk replay")


def cancel_preview(request: Request) -> Response:
    console = _console(request)
    data = console.queries.run_page(request.path_params["run_id"])
    return console.render.page(request, "cancel_preview.html", run=data["run"])


async def cancel(request: Request) -> Response:
    console = _console(request)
    form = await request.form()
    console.guard.require_writer(request, _text(form.get("csrf")))
    run_id = request.path_params["run_id"]
    outcome = await run_in_threadpool(console.commands.cancel, run_id, "cancelled from the console")
    status = 409 if outcome.accepted is False else 200
    return console.render.page(request, "outcome.html", status=status, title="Cancel",
                               results=[{"run_id": run_id, "task": None, "outcome": outcome}])


def systems(request: Request) -> Response:
    console = _console(request)
    seen = console.queries.systems_seen()
    applied: list[dict[str, Any]] = []
    kafka_error = None
    if console.systems is not None:
        try:
            applied = console.systems.systems()
        except ConsoleError as error:
            kafka_error = str(error)
    return console.render.page(request, "systems.html", applied=applied, seen=seen, kafka_error=kafka_error)


def login_form(request: Request) -> Response:
    return _console(request).render.page(request, "login.html", error=None, next=_next(request))


async def login(request: Request) -> Response:
    console = _console(request)
    form = await request.form()
    check_csrf(request, _text(form.get("csrf")))
    if not console.guard.writable:
        raise Forbidden("the console is read-only: there is nothing to log in to")
    if not console.guard.token_matches(_text(form.get("token"))):
        return console.render.page(request, "login.html", status=403, error="wrong token", next=_next(request))
    response = RedirectResponse(_next(request, _text(form.get("next"))), status_code=303)
    session = console.guard.new_session()
    response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_MAX_AGE_S, httponly=True,
                        samesite="strict", secure=console.settings.secure_cookies, path="/")
    name = _text(form.get("name")).strip()
    if name and console.settings.token is not None:  # who decides approvals (console/approvals.py)
        response.set_cookie(WHO_COOKIE, who_cookie(console.settings.token.get_secret_value(), session, name[:80]),
                            max_age=SESSION_MAX_AGE_S, httponly=True, samesite="strict",
                            secure=console.settings.secure_cookies, path="/")
    return response


async def logout(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, _text(form.get("csrf")))
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(WHO_COOKIE, path="/")
    return response


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _next(request: Request, value: str | None = None) -> str:
    """Where to go after login: a path on this console only (no open redirect)."""
    target = value if value is not None else request.query_params.get("next", "/")
    return target if target.startswith("/") and not target.startswith("//") else "/"


def routes() -> list[Route]:
    return [
        Route("/", overview),
        Route("/runs", runs),
        Route("/fragments/runs", runs_fragment),
        Route("/runs/{run_id}", run),
        Route("/fragments/runs/{run_id}", run_fragment),
        Route("/runs/{run_id}/cancel", cancel_preview, methods=["GET"]),
        Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
        Route("/runs/{run_id}/tasks/{task}/replay", replay_preview, methods=["GET"]),
        Route("/runs/{run_id}/tasks/{task}/replay", replay_one, methods=["POST"]),
        Route("/dead-letters", dead_letters),
        Route("/fragments/dead-letters", dead_letters_fragment),
        Route("/dead-letters/replay", bulk_preview, methods=["GET"]),
        Route("/dead-letters/replay", bulk_replay, methods=["POST"]),
        Route("/dead-letters/{run_id}/{task}", dead_letter),
        Route("/systems", systems),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]
