"""Per-run state of the orchestrator: a pure fold of the run's events."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from taskplane.contract.messages import AttemptRecord, FailureKind
from taskplane.contract.plan import SystemPlan


class TaskStatus(str, Enum):
    PENDING = "pending"  # waiting for dependencies
    READY = "ready"  # offered on `work`, not leased
    LEASED = "leased"  # one worker holds the lease for the current epoch
    BACKOFF = "backoff"  # failed, waiting for its retry due time
    SUCCEEDED = "succeeded"
    DEAD_LETTERED = "dead_lettered"
    BLOCKED = "blocked"  # a dependency is dead-lettered
    FAILED = "failed"  # the run failed (no dead-letter transition)
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"  # a tool call waits for a person; no lease, no worker


class RunStatus(str, Enum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class ToolCallRecord:
    key: str
    tool: str
    call_index: int
    ok: bool
    result: str | None
    error: str | None
    epoch: int


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """One approval of a run, by id (the call's idempotency key)."""

    approval_id: str
    task: str
    tool: str
    call_index: int
    status: str  # pending | granted | denied | expired
    requested_ms: int
    expires_ms: int
    input_preview: str = ""
    reason: str = ""
    who: str | None = None
    decided_ms: int | None = None
    decision_reason: str | None = None


@dataclass(frozen=True, slots=True)
class TaskState:
    name: str
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = 0  # the current (or next) attempt, 1-based once ready
    failures: int = 0  # counted failures since submission or the last replay
    epoch: int = 0  # fencing epoch of the latest lease
    holder: str | None = None
    lease_expires_ms: int | None = None
    retry_due_ms: int | None = None
    output: str | None = None
    last_error: str | None = None
    last_failure_kind: FailureKind | None = None
    blocked_by: str | None = None
    history: tuple[AttemptRecord, ...] = ()
    tokens: int = 0  # usage of every attempt of the task (docs/governance.md)
    cost_micros: int = 0


@dataclass(frozen=True, slots=True)
class RunState:
    run_id: str
    plan: SystemPlan
    input: str
    submitted_ms: int
    idempotency_key: str | None = None
    status: RunStatus = RunStatus.RUNNING
    finished_ms: int | None = None
    reason: str | None = None
    tasks: dict[str, TaskState] = field(default_factory=dict)  # copy-on-write
    journal: dict[str, ToolCallRecord] = field(default_factory=dict)  # by idempotency key
    retired_ms: int | None = None  # set by RunRetired: tasks, journal and input are gone
    approvals: dict[str, ApprovalRecord] = field(default_factory=dict)  # by approval id (call key)
    tokens: int = 0  # usage folded over the run's outcomes (docs/governance.md)
    cost_micros: int = 0
    tenant: str = ""  # "": none; with a priority or the plan's scheduling, the run is dispatched
    priority: int = 0  # 1..5, 0: none
