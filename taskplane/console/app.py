"""The console's ASGI app: routes, error pages and wiring (``build_app``).

Pages are server-rendered (Jinja2, autoescaped); live pages re-fetch their own
fragment (``/fragments/...``) at the poll interval. The JSON API (``/api/...``)
answers the same reads; writes go through ``CommandWriter``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from taskplane.console import api, approvals, pages
from taskplane.console.approvals import ApprovalDesk
from taskplane.console.commands import CommandWriter
from taskplane.console.context import Console
from taskplane.console.errors import ConsoleError, ReadModelUnavailable
from taskplane.console.queries import ConsoleQueries
from taskplane.console.rendering import HERE, SECURITY_HEADERS, Renderer
from taskplane.console.security import Guard
from taskplane.console.settings import ConsoleSettings
from taskplane.console.systems import SystemCatalog
from taskplane.console.webhooks import HookSubmitter
from taskplane.console.webhooks import routes as hook_routes


def build_app(settings: ConsoleSettings, database_url: str, commands: CommandWriter,
              systems: SystemCatalog | None, desk: ApprovalDesk | None = None,
              hooks: HookSubmitter | None = None) -> Starlette:
    guard = Guard(settings.token)
    console = Console(
        settings=settings,
        queries=ConsoleQueries(database_url, settings.read_model_schema, settings.pool_size,
                               settings.database_timeout_s),
        commands=commands, systems=systems, guard=guard,
        render=Renderer(guard, settings.poll_interval_ms, settings.secure_cookies),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        console.queries.open()
        try:
            yield
        finally:
            console.queries.close()
            console.commands.close()
            if console.systems is not None:
                console.systems.close()
            if desk is not None:
                desk.close()
            if hooks is not None:
                hooks.close()

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    def readyz(request: Request) -> Response:
        if console.queries.ready():
            return PlainTextResponse("ready")
        return PlainTextResponse("not ready: the read model does not answer", status_code=503)

    routes = [Route("/healthz", healthz), Route("/readyz", readyz),
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
              *approvals.routes(), *api.routes(), *pages.routes(), *hook_routes(hooks)]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={ConsoleError: _console_error, HTTPException: _http_error})
    app.state.console = console
    app.state.approvals = desk

    return app


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _console_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ConsoleError)
    field = getattr(error, "field", None)
    if _wants_json(request):
        body: dict[str, Any] = {"error": str(error)}
        if field:
            body["field"] = field
        return JSONResponse(body, status_code=error.status, headers=SECURITY_HEADERS)
    console: Console = request.app.state.console
    banner = str(error) if isinstance(error, ReadModelUnavailable) else None
    return console.render.page(request, "error.html", status=error.status, message=str(error),
                               status_code=error.status, banner=banner)


def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    message = "no such page" if error.status_code == 404 else str(error.detail)
    if _wants_json(request):
        return JSONResponse({"error": message}, status_code=error.status_code, headers=SECURITY_HEADERS)
    console: Console = request.app.state.console
    return console.render.page(request, "error.html", status=error.status_code, message=message,
                               status_code=error.status_code, banner=None)
