"""Breaker processor messages (partitioned by tool). Input is ``ToolOutcome`` from
``tool-outcomes`` plus ``Tick``; the current state goes to the compacted ``breakers``
topic for workers and the orchestrator."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from taskplane.contract.permits import PermitHolder, PermitRequest


class BreakerStatus(str, Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerState:
    tool: str
    status: BreakerStatus = BreakerStatus.CLOSED
    consecutive_failures: int = 0
    failure_threshold: int = 5
    cooldown_ms: int = 60_000
    opened_ms: int | None = None
    half_open_due_ms: int | None = None
    transitions: int = 0
    # The tool's permits (contract/permits.py); all zero for a tool without limits.
    rate_limit: int = 0
    rate_period_ms: int = 0
    concurrency: int = 0
    hold_ms: int = 0
    tokens: int = 0  # the bucket, in units of 1/rate_period_ms of a call (exact integer refill)
    refilled_ms: int = 0  # log time the bucket was last refilled to
    holders: tuple[PermitHolder, ...] = ()
    waiting: tuple[PermitRequest, ...] = ()
    permits_granted: int = 0


@dataclass(frozen=True, slots=True)
class BreakerTick:
    now_ms: int


@dataclass(frozen=True, slots=True)
class FailureCounted:
    tool: str
    consecutive_failures: int
    failure_threshold: int
    cooldown_ms: int


@dataclass(frozen=True, slots=True)
class FailuresReset:
    tool: str


@dataclass(frozen=True, slots=True)
class BreakerOpened:
    tool: str
    opened_ms: int
    half_open_due_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class BreakerHalfOpened:
    tool: str


@dataclass(frozen=True, slots=True)
class BreakerClosed:
    tool: str


@dataclass(frozen=True, slots=True)
class BreakerCommandRejected:
    tool: str
    reason: str


BreakerEvent = (
    FailureCounted
    | FailuresReset
    | BreakerOpened
    | BreakerHalfOpened
    | BreakerClosed
    | BreakerCommandRejected
)
