"""The console's Approvals page: tool calls waiting for a person, approve or deny.

A decision is a write like replay: the console token (bearer, or the login cookie plus
CSRF) is required. It names the person: the name given at login (kept in a cookie signed
with the console token and bound to the session), or, with a bearer token, the
``X-Taskplane-User`` header. The console signs the decision with TASKPLANE_APPROVAL_KEY
(``ApprovalDesk``); without the key it cannot decide at all. docs/governance.md.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING, Any, Protocol

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskplane.console.context import console_of
from taskplane.console.errors import BadRequest, CommandFailed, Forbidden
from taskplane.console.security import SESSION_COOKIE
from taskplane.contract.errors import TaskplaneError
from taskplane.exceptions import UserInputError

if TYPE_CHECKING:
    from taskplane.client import Client
    from taskplane.client._approvals import ApprovalInfo
    from taskplane.streams.topics import Topics

WHO_COOKIE = "taskplane_who"
WHO_HEADER = "x-taskplane-user"


class ApprovalDesk(Protocol):
    def pending(self) -> list[ApprovalInfo]: ...

    def decide(self, approval_id: str, granted: bool, who: str, reason: str) -> ApprovalInfo: ...

    def close(self) -> None: ...


class ClientDesk:
    """Approvals through ``taskplane.Client`` (the key from TASKPLANE_APPROVAL_KEY)."""

    def __init__(self, kafka_config: dict[str, Any], topics: Topics, timeout_s: float) -> None:
        self._kafka, self._topics, self._timeout_s = kafka_config, topics, timeout_s
        self._client: Client | None = None

    def _ready(self) -> Client:
        if self._client is None:
            from taskplane.client import Client

            options = {k: v for k, v in self._kafka.items() if k != "bootstrap.servers"}
            self._client = Client(str(self._kafka["bootstrap.servers"]), topic_prefix=self._topics.prefix,
                                  kafka_options=options)
        return self._client

    def pending(self) -> list[ApprovalInfo]:
        return self._ready().approvals()

    def decide(self, approval_id: str, granted: bool, who: str, reason: str) -> ApprovalInfo:
        client = self._ready()
        if granted:
            return client.approve(approval_id, who=who, reason=reason, timeout=self._timeout_s)
        return client.deny(approval_id, reason, who=who, timeout=self._timeout_s)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


# ------------------------------------------------------------ who is deciding


def _who_mac(key: bytes, session: str, name: str) -> str:
    return hmac.new(key, f"who|{session}|{name}".encode(), hashlib.sha256).hexdigest()


def who_cookie(token: str, session: str, name: str) -> str:
    """The cookie that names the person behind ``session`` (set at login)."""
    return f"{name}|{_who_mac(token.encode(), session, name)}"


def _person(request: Request) -> str:
    """Who decides: the login's name, or the bearer caller's ``X-Taskplane-User``."""
    console = console_of(request)
    token = console.settings.token.get_secret_value() if console.settings.token is not None else ""
    if console.guard.bearer(request) is not None:
        name = request.headers.get(WHO_HEADER, "").strip()
        if not name:
            raise Forbidden(f"a decision names its person: send the {WHO_HEADER} header")
        return name
    name, _, mac = request.cookies.get(WHO_COOKIE, "").rpartition("|")
    session = request.cookies.get(SESSION_COOKIE, "")
    if not name or not token or not hmac.compare_digest(mac, _who_mac(token.encode(), session, name)):
        raise Forbidden("deciding an approval needs your name: log in again and give it")
    return name


# ------------------------------------------------------------ pages


def _desk(request: Request) -> ApprovalDesk:
    desk: ApprovalDesk | None = getattr(request.app.state, "approvals", None)
    if desk is None:
        raise CommandFailed("this console has no access to the log's approvals")
    return desk


async def approvals_page(request: Request) -> Response:
    console = console_of(request)
    try:
        pending = await run_in_threadpool(_desk(request).pending)
        error = None
    except (TaskplaneError, CommandFailed) as failure:
        pending, error = [], str(failure)
    return console.render.page(request, "approvals.html", pending=pending, error=error, now_ms=console.now_ms())


async def _decide(request: Request, granted: bool) -> tuple[ApprovalInfo, int]:
    console = console_of(request)
    form = await request.form() if not request.url.path.startswith("/api/") else {}
    csrf = form.get("csrf") if form else None
    console.guard.require_writer(request, csrf if isinstance(csrf, str) else None)
    who = _person(request)
    reason = form.get("reason") if form else request.query_params.get("reason")
    reason = reason if isinstance(reason, str) else ""
    if not granted and not reason.strip():
        raise BadRequest("reason", "a denial says why")
    try:
        info = await run_in_threadpool(_desk(request).decide, request.path_params["approval_id"], granted, who,
                                       reason)
    except UserInputError as refused:
        raise BadRequest("approval", str(refused)) from None
    except TaskplaneError as failure:
        raise CommandFailed(str(failure)) from None
    return info, 200


async def approve(request: Request) -> Response:
    info, status = await _decide(request, True)
    return _decided(request, info, status)


async def deny(request: Request) -> Response:
    info, status = await _decide(request, False)
    return _decided(request, info, status)


def _decided(request: Request, info: ApprovalInfo, status: int) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"approval_id": info.approval_id, "status": info.status, "who": info.who,
                             "decided_ms": info.decided_ms, "reason": info.decision_reason}, status_code=status)
    console = console_of(request)
    return console.render.page(request, "approval_decided.html", status=status, info=info)


def routes() -> list[Route]:
    return [
        Route("/approvals", approvals_page),
        Route("/approvals/{approval_id}/approve", approve, methods=["POST"]),
        Route("/approvals/{approval_id}/deny", deny, methods=["POST"]),
        Route("/api/approvals/{approval_id}/approve", approve, methods=["POST"]),
        Route("/api/approvals/{approval_id}/deny", deny, methods=["POST"]),
    ]
