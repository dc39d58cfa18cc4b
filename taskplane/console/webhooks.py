"""``POST /hooks/<system>``: a signed webhook starts a run (docs/scheduling.md, "Webhooks").

Not a decider: the request is checked here and becomes a ``SubmitRun`` whose idempotency
key is ``webhook/<event id>``, so a redelivered event is the same run (the orchestrator
refuses the second submit of a run id while it keeps the run, its final record included:
``TASKPLANE_ORCHESTRATOR_FINAL_RECORD_RETENTION_MS``, 7 days by default).

Two signature profiles, both HMAC-SHA256 with the system's secret
(``TASKPLANE_WEBHOOK_SECRET_<SYSTEM>``, the name upper-cased, ``-`` and ``.`` as ``_``):
- GitHub: ``X-Hub-Signature-256: sha256=<hex of hmac(body)>``, event id ``X-GitHub-Delivery``;
- generic: ``X-Taskplane-Signature: sha256=<hex of hmac("<timestamp>." + body)>``,
  ``X-Taskplane-Timestamp`` (unix seconds, within ``skew_s`` of this server's clock) and
  ``X-Taskplane-Event-Id``.
A bad or missing signature is 401 and nothing is written; the body must be JSON (the
run's input, as sent) and at most ``max_body_bytes``. Secrets and signatures are never
logged nor echoed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import threading
import time
from collections.abc import Mapping
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskplane.client.run_input import decode_input
from taskplane.console.errors import ConsoleError
from taskplane.contract.messages import SubmitRun
from taskplane.contract.plan import SystemDefinition
from taskplane.exceptions import UserInputError
from taskplane.streams.exceptions import StreamsError
from taskplane.streams.publisher import Publisher, run_id_for
from taskplane.streams.table import GlobalTable
from taskplane.streams.topics import Topics

KEY_PREFIX = "webhook/"
_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")


class WebhookSettings(BaseSettings):
    """Limits of ``/hooks/<system>``. The secrets are per system, read from the
    environment when a request comes (``secret_for``), never held in settings."""

    model_config = SettingsConfigDict(env_prefix="TASKPLANE_WEBHOOK_", extra="ignore")

    max_body_bytes: int = Field(default=256 * 1024, ge=1, le=900 * 1024,
                                description="Larger bodies are refused (413); a run's input must fit a record.")
    skew_s: int = Field(default=300, ge=1, description="Generic profile: how far the timestamp may be off.")


class Refused(ConsoleError):
    """A hook not taken; ``status`` is its HTTP answer (503, Kafka away, may be retried)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message, retryable=status == 503)
        self.status = status


def secret_env(system: str) -> str:
    return "TASKPLANE_WEBHOOK_SECRET_" + re.sub(r"[^A-Za-z0-9]", "_", system).upper()


def secret_for(system: str, environ: Mapping[str, str] = os.environ) -> bytes | None:
    value = environ.get(secret_env(system), "")
    return value.encode() if value else None


def _sign(secret: bytes, payload: bytes) -> str:
    return "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()


def verify(headers: Mapping[str, str], body: bytes, secret: bytes, now_s: float, skew_s: int) -> str:
    """The event id of a correctly signed request; ``Refused`` (401, or 400 for a signed
    request without an event id) otherwise. Header names are lower-case."""
    github = headers.get("x-hub-signature-256")
    if github is not None:
        if not hmac.compare_digest(github.encode(), _sign(secret, body).encode()):
            raise Refused(401, "bad signature")
        event_id = headers.get("x-github-delivery")
    else:
        signature, stamp = headers.get("x-taskplane-signature"), headers.get("x-taskplane-timestamp")
        if not signature or not stamp:
            raise Refused(401, "missing signature: X-Hub-Signature-256, or X-Taskplane-Signature and "
                               "X-Taskplane-Timestamp")
        if not stamp.isascii() or not stamp.isdigit():
            raise Refused(401, "X-Taskplane-Timestamp is not unix seconds")
        if abs(now_s - int(stamp)) > skew_s:
            raise Refused(401, f"timestamp outside +/-{skew_s} s of this server's clock")
        if not hmac.compare_digest(signature.encode(), _sign(secret, stamp.encode() + b"." + body).encode()):
            raise Refused(401, "bad signature")
        event_id = headers.get("x-taskplane-event-id")
    if not event_id or not _EVENT_ID.fullmatch(event_id):
        raise Refused(400, "missing or malformed event id (X-GitHub-Delivery or X-Taskplane-Event-Id)")
    return event_id


class HookSubmitter:
    """Submits a hook's run: the system's current plan from the ``systems`` topic (a
    table started at the first hook), the SubmitRun written and flushed before the answer."""

    def __init__(self, kafka_config: dict[str, Any], topics: Topics, timeout_s: float = 10.0) -> None:
        self._kafka, self._topics, self._timeout_s = kafka_config, topics, timeout_s
        self._table: GlobalTable | None = None
        self._publisher: Publisher | None = None
        self._lock = threading.Lock()

    def submit(self, system: str, input_text: str, event_id: str) -> tuple[str, str]:
        key = KEY_PREFIX + event_id
        with self._lock:
            if self._table is None:
                self._table = GlobalTable(self._kafka, self._topics.systems)
                self._table.wait_until_caught_up(self._timeout_s)
            if self._publisher is None:
                self._publisher = Publisher(self._kafka, self._topics)
            definition = self._table.get(system)
            if not isinstance(definition, SystemDefinition):
                raise Refused(404, f"no system {system!r} has been applied")
            run_id = run_id_for(system, key)
            try:
                self._publisher.publish(SubmitRun(run_id, definition.plan, input_text, key))
                self._publisher.flush(self._timeout_s)
            except StreamsError as error:
                raise Refused(503, f"the run was not written: {error}") from None
        return run_id, key

    def close(self) -> None:
        with self._lock:
            if self._table is not None:
                self._table.close()
            if self._publisher is not None:
                with contextlib.suppress(StreamsError):
                    self._publisher.flush(5)


def routes(submitter: HookSubmitter | None, settings: WebhookSettings | None = None) -> list[Route]:
    limits = settings or WebhookSettings()

    async def hook(request: Request) -> Response:
        system = request.path_params["system"]
        try:
            secret = secret_for(system)
            if secret is None or submitter is None:
                raise Refused(404, f"no webhook for system {system!r} (set {secret_env(system)})")
            body = await _body(request, limits.max_body_bytes)
            headers = {k.lower(): v for k, v in request.headers.items()}
            event_id = verify(headers, body, secret, time.time(), limits.skew_s)
            try:
                value = decode_input(body)
            except UserInputError as error:
                raise Refused(400, f"the body is {error}") from None
            text = json.dumps(value, sort_keys=True, separators=(",", ":"))
            run_id, key = await run_in_threadpool(submitter.submit, system, text, event_id)
        except Refused as refused:
            return JSONResponse({"error": str(refused)}, status_code=refused.status)
        return JSONResponse({"run_id": run_id, "idempotency_key": key}, status_code=202)

    return [Route("/hooks/{system}", hook, methods=["POST"])]


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, f"body over {limit} bytes")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refused(413, f"body over {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Refused(400, "the client went away") from None
    return b"".join(chunks)
