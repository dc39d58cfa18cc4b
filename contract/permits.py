"""Tool permits (fleet-wide rate limits and concurrency), decided by the breaker
processor grown into the tool governor (partitioned by tool).

A worker about to call a limited tool writes ``AcquirePermit`` to ``tool-outcomes``
(key: the tool) and waits on its inbox for ``PermitGranted`` (or ``PermitDenied``
while the tool's breaker is open). A permit is named by the call's idempotency key and
the try within the attempt; the call's ``ToolOutcome`` releases it, and the tool's
timeout releases it for a holder that died. The limits travel with each request, like
the breaker policy with each outcome: the latest declaration of a tool wins."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AcquirePermit:
    """On ``tool-outcomes`` (key ``tool``), from the worker that will make the call."""

    tool: str
    key: str  # the call's idempotency key
    try_no: int  # the try within the attempt (the tool's own retries)
    worker_id: str
    run_id: str
    task: str
    epoch: int
    rate_limit: int  # calls per rate_period_ms; 0 = no rate limit
    rate_period_ms: int
    concurrency: int  # calls at once; 0 = no cap
    hold_ms: int  # how long a permit lasts when its holder never reports (the tool's timeout)


@dataclass(frozen=True, slots=True)
class PermitRequest:
    """A request waiting in the governor's queue (first come, first served)."""

    key: str
    try_no: int
    worker_id: str
    run_id: str
    task: str
    epoch: int
    requested_ms: int


@dataclass(frozen=True, slots=True)
class PermitHolder:
    """A permit granted and not yet released."""

    key: str
    try_no: int
    worker_id: str
    run_id: str
    task: str
    epoch: int
    granted_ms: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class PermitLimitsSet:
    tool: str
    rate_limit: int
    rate_period_ms: int
    concurrency: int
    hold_ms: int
    at_ms: int  # the bucket refills up to here under the old limits first


@dataclass(frozen=True, slots=True)
class PermitQueued:
    tool: str
    request: PermitRequest


@dataclass(frozen=True, slots=True)
class PermitGranted:
    """An event of the governor, and the answer on the worker's inbox (key ``worker_id``)."""

    tool: str
    key: str
    try_no: int
    worker_id: str
    run_id: str
    task: str
    epoch: int
    granted_ms: int
    expires_ms: int
    token: bool  # took a token from the bucket (a holder's permit handed to its next attempt takes none)


@dataclass(frozen=True, slots=True)
class PermitDenied:
    """A request the governor will not grant (the tool's breaker is open, or a newer
    attempt holds the call); on the worker's inbox too."""

    tool: str
    key: str
    try_no: int
    worker_id: str
    run_id: str
    task: str
    epoch: int
    reason: str
    retry_after_ms: int = 0


@dataclass(frozen=True, slots=True)
class PermitReleased:
    tool: str
    key: str
    try_no: int
    reason: str  # "outcome" | "expired"


PermitEvent = PermitLimitsSet | PermitQueued | PermitGranted | PermitDenied | PermitReleased
