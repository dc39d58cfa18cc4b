"""HTML rendering: one Jinja2 environment with autoescape on, and the page helpers.

Every page sets a strict Content-Security-Policy (scripts and styles only from
/static), so even an unescaped value could not run a script.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from taskplane.console.security import CSRF_COOKIE, Guard, csrf_token
from taskplane.contract.governance import format_cost

HERE = Path(__file__).resolve().parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
       " form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {"content-security-policy": CSP, "x-content-type-options": "nosniff",
                    "referrer-policy": "same-origin", "x-frame-options": "DENY"}


def when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | float | None) -> str:
    if ms is None:
        return "–"
    seconds = ms / 1000
    if seconds < 1:
        return f"{ms:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def pretty(text: str | None) -> str:
    """JSON text indented for reading; anything else as it is."""
    if text is None:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=True)
    except ValueError:
        return text


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, duration=duration, pretty=pretty, cost=format_cost)
    return env


class Renderer:
    def __init__(self, guard: Guard, poll_interval_ms: int, secure_cookies: bool) -> None:
        self._env = environment()
        self._guard = guard
        self._poll_ms = poll_interval_ms
        self._secure = secure_cookies

    def page(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        csrf = csrf_token(request)
        signed_in = self._guard.writable and self._guard.signed_in(request)
        body = self._env.get_template(template).render(
            request=request, csrf=csrf, writable=self._guard.writable, signed_in=signed_in,
            poll_ms=self._poll_ms, path=request.url.path, **context)
        response = HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)
        if request.cookies.get(CSRF_COOKIE) != csrf:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=self._secure, path="/")
        return response
