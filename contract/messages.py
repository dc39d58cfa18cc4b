"""Commands the orchestrator accepts, events it records, records it derives.

Every message is a frozen, slotted dataclass keyed by ``run_id`` (``Tick`` excepted:
it is addressed to a partition and fans out to the runs with a due timer). Payloads
that belong to the user (run input, task output, tool results) are JSON text: the
orchestrator moves them, never interprets them. Each class has an Avro schema of the
same name in ``schemas/``; ``taskplane.streams.serde`` maps between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from taskplane.contract.governance import PolicyPlan, Usage
from taskplane.contract.plan import SystemPlan, ToolPlan

# ---------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class SubmitRun:
    run_id: str
    plan: SystemPlan
    input: str
    idempotency_key: str | None = None
    tenant: str = ""  # "" : none (issue 27, docs/scheduling.md)
    priority: int = 0  # 1..5, 0: none


@dataclass(frozen=True, slots=True)
class ClaimTask:
    run_id: str
    task: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class RenewLease:
    run_id: str
    task: str
    worker_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class ReleaseLease:
    run_id: str
    task: str
    worker_id: str
    epoch: int


@dataclass(frozen=True, slots=True)
class RecordToolCall:
    run_id: str
    task: str
    worker_id: str
    epoch: int
    key: str
    tool: str
    call_index: int
    ok: bool
    result: str | None = None
    error: str | None = None
    usage: tuple[Usage, ...] = ()  # what the call or attempt used (docs/governance.md)


@dataclass(frozen=True, slots=True)
class CompleteTask:
    run_id: str
    task: str
    worker_id: str
    epoch: int
    output: str
    # How many of the downstream tasks this completion readies the completing worker
    # takes at once (its free slots): granted in the same transaction, no claim.
    follow_on: int = 0
    usage: tuple[Usage, ...] = ()  # what the call or attempt used (docs/governance.md)
    # The children of this task the worker started ahead of their grant, which this
    # completion decides (workers/speculation.py): their grants send no Assignment.
    started_ahead: tuple[str, ...] = ()


class FailureKind(str, Enum):
    ERROR = "error"  # counts against maxRetries, retried with backoff
    NON_RETRYABLE = "non_retryable"  # dead-lettered (or fails the run) at once
    BREAKER_OPEN = "breaker_open"  # a dependency is known down: retried later, budget kept


@dataclass(frozen=True, slots=True)
class FailTask:
    run_id: str
    task: str
    worker_id: str
    epoch: int
    error: str
    kind: FailureKind = FailureKind.ERROR
    retry_after_ms: int = 0
    usage: tuple[Usage, ...] = ()  # what the call or attempt used (docs/governance.md)


@dataclass(frozen=True, slots=True)
class ReplayTask:
    run_id: str
    task: str
    requested_by: str = "operator"


@dataclass(frozen=True, slots=True)
class CancelRun:
    run_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    now_ms: int


@dataclass(frozen=True, slots=True)
class RequestApproval:
    """From the lease holder: its call ``key`` (the approval's id) to an approval-required
    tool waits for a person. The attempt gives its lease back with it."""

    run_id: str
    task: str
    worker_id: str
    epoch: int
    key: str
    tool: str
    call_index: int
    input_preview: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class DecideApproval:
    """A person's decision, signed: ``signature`` is the HMAC-SHA256 of (approval id,
    verdict, who, decided_ms) under TASKPLANE_APPROVAL_KEY (``contract/approvals.py``)."""

    run_id: str
    approval_id: str
    granted: bool
    who: str
    decided_ms: int
    reason: str
    signature: str


Command = (
    SubmitRun
    | ClaimTask
    | RenewLease
    | ReleaseLease
    | RecordToolCall
    | CompleteTask
    | FailTask
    | ReplayTask
    | CancelRun
    | Tick
    | RequestApproval
    | DecideApproval
)

# ---------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class RunSubmitted:
    run_id: str
    plan: SystemPlan
    input: str
    submitted_ms: int
    idempotency_key: str | None = None
    # Recorded input: the free worker slots the hints gave this submit (one entry per
    # slot, freshest first); root task i was granted to free_slots[i].
    free_slots: tuple[str, ...] = ()
    tenant: str = ""
    priority: int = 0


@dataclass(frozen=True, slots=True)
class TaskReady:
    run_id: str
    task: str
    attempt: int
    offered: bool = True  # False: the same decision grants it (LeaseGranted follows), no WorkItem


@dataclass(frozen=True, slots=True)
class LeaseGranted:
    run_id: str
    task: str
    attempt: int
    worker_id: str
    epoch: int
    expires_ms: int
    # The holder already runs it: its completion of the parent named it as started ahead
    # (CompleteTask.started_ahead). The grant is a fact all the same; only the Assignment
    # the holder would ignore is not written to its inbox.
    started_ahead: bool = False


@dataclass(frozen=True, slots=True)
class LeaseRenewed:
    run_id: str
    task: str
    epoch: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    run_id: str
    task: str
    epoch: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class LeaseReleased:
    run_id: str
    task: str
    epoch: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class ToolCallSucceeded:
    run_id: str
    task: str
    epoch: int
    key: str
    tool: str
    call_index: int
    result: str
    usage: tuple[Usage, ...] = ()  # what the call or attempt used (docs/governance.md)


@dataclass(frozen=True, slots=True)
class ToolCallFailed:
    run_id: str
    task: str
    epoch: int
    key: str
    tool: str
    call_index: int
    error: str
    usage: tuple[Usage, ...] = ()  # what the call or attempt used (docs/governance.md)


@dataclass(frozen=True, slots=True)
class TaskSucceeded:
    run_id: str
    task: str
    attempt: int
    epoch: int
    output: str
    usage: tuple[Usage, ...] = ()  # what the call or attempt used (docs/governance.md)


@dataclass(frozen=True, slots=True)
class AttemptFailed:
    run_id: str
    task: str
    attempt: int
    epoch: int
    error: str
    kind: FailureKind
    counted: bool  # False when the failure does not burn the retry budget
    usage: tuple[Usage, ...] = ()  # what the call or attempt used (docs/governance.md)


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    run_id: str
    task: str
    attempt: int  # the attempt that will run
    due_ms: int
    backoff_ms: int


@dataclass(frozen=True, slots=True)
class TaskDeadLettered:
    run_id: str
    task: str
    attempts: int
    error: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class TaskBlocked:
    run_id: str
    task: str
    blocked_by: str


@dataclass(frozen=True, slots=True)
class TaskReplayed:
    run_id: str
    task: str
    attempt: int
    requested_by: str


@dataclass(frozen=True, slots=True)
class RunSucceeded:
    run_id: str
    finished_ms: int


@dataclass(frozen=True, slots=True)
class RunFailed:
    run_id: str
    reason: str
    finished_ms: int
    # The run's usage when it ended, and for budget_exceeded the workers that held a
    # lease then (each is told on its inbox: its attempt stops at its next tool call).
    tokens: int = 0
    cost_micros: int = 0
    holders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunCancelled:
    run_id: str
    reason: str
    finished_ms: int


@dataclass(frozen=True, slots=True)
class RunRetired:
    """The finished run's retention passed: only its final record stays."""

    run_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class RunForgotten:
    """The final record's retention passed: nothing of the run stays in state."""

    run_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class CommandRejected:
    run_id: str
    command: str  # the command's type name
    task: str | None
    worker_id: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class ApprovalRequested:
    run_id: str
    task: str
    approval_id: str  # the call's idempotency key
    tool: str
    call_index: int
    input_preview: str
    reason: str
    ttl_ms: int
    requested_ms: int
    expires_ms: int
    attempt: int
    epoch: int


@dataclass(frozen=True, slots=True)
class ApprovalGranted:
    run_id: str
    task: str
    approval_id: str
    who: str
    decided_ms: int
    reason: str
    at_ms: int  # when the orchestrator recorded it


@dataclass(frozen=True, slots=True)
class ApprovalDenied:
    run_id: str
    task: str
    approval_id: str
    who: str
    decided_ms: int
    reason: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class ApprovalExpired:
    run_id: str
    task: str
    approval_id: str
    at_ms: int


Event = (
    RunSubmitted
    | TaskReady
    | LeaseGranted
    | LeaseRenewed
    | LeaseExpired
    | LeaseReleased
    | ToolCallSucceeded
    | ToolCallFailed
    | TaskSucceeded
    | AttemptFailed
    | RetryScheduled
    | TaskDeadLettered
    | TaskBlocked
    | TaskReplayed
    | RunSucceeded
    | RunFailed
    | RunCancelled
    | RunRetired
    | RunForgotten
    | CommandRejected
    | ApprovalRequested
    | ApprovalGranted
    | ApprovalDenied
    | ApprovalExpired
)

# ---------------------------------------------------------------- derived records


@dataclass(frozen=True, slots=True)
class WorkItem:
    """On ``work`` (key ``run_id/task``): a ready task offered to worker pools."""

    run_id: str
    system: str
    task: str
    attempt: int


@dataclass(frozen=True, slots=True)
class JournalEntry:
    key: str
    tool: str
    call_index: int
    result: str


@dataclass(frozen=True, slots=True)
class Assignment:
    """On ``inbox`` (key ``worker_id``): the reply to a claim. ``granted`` False
    carries the rejection reason; True carries all the worker needs to run the task."""

    worker_id: str
    run_id: str
    task: str
    attempt: int
    granted: bool
    reason: str | None
    epoch: int
    expires_ms: int
    lease_timeout_ms: int
    system: str
    model: str | None
    input: str
    dependency_outputs: dict[str, str]
    journal: tuple[JournalEntry, ...]
    tools: tuple[ToolPlan, ...] = ()  # the run's own tool policy for this task
    granted_approvals: tuple[str, ...] = ()  # call keys a person granted that have not run yet
    # The run's governance, and its usage when the lease was granted: the worker
    # refuses a call once its own usage since would exhaust what was left.
    policy: PolicyPlan | None = None
    run_tokens: int = 0
    run_cost_micros: int = 0
    # The run's plan version: a worker runs follow-ons ahead of their grant only for
    # runs of the plan it holds (workers/speculation.py).
    plan_version: str = ""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    attempt: int
    epoch: int
    worker_id: str | None
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """On ``deadletter`` (key ``run_id``): everything an operator needs to decide."""

    run_id: str
    system: str
    task: str
    error: str
    attempts: tuple[AttemptRecord, ...]
    journal: tuple[JournalEntry, ...]
    dead_lettered_ms: int


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """On ``tool-outcomes`` (key ``tool``): the breaker processor's input."""

    tool: str
    ok: bool
    failure_threshold: int
    cooldown_ms: int
    run_id: str
    error: str | None = None
    key: str | None = None  # the call's idempotency key: releases its permit (contract/permits.py)


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One task of a ``RunRecord``: its status, and its output once it succeeded
    (kept for the run's final tasks only: what ``result()`` returns)."""

    task: str = ""
    status: str = "pending"
    output: str | None = None
    error: str | None = None  # the dead letter's error
    attempts: int = 0  # attempts used, for a dead letter
    blocked_by: str | None = None  # the dead-lettered task upstream, for a blocked task


@dataclass(frozen=True, slots=True)
class RunRecord:
    """On ``runs`` (compacted, key ``run_id``): the latest summary of one run, so a
    client finds a run, and a finished run's result, by its key alone. Written on the
    run's submit, dead letters and replays, its end, and as the answer to every
    rejected ``SubmitRun`` (a duplicate sees the run as it stands). Every field has a
    default, so either side of a schema change reads the other's records."""

    run_id: str = ""
    system: str = ""
    plan_version: str = ""
    status: str = "running"  # running | succeeded | failed | cancelled | rejected
    idempotency_key: str | None = None
    reason: str | None = None
    submitted_ms: int | None = None
    finished_ms: int | None = None
    tasks: tuple[TaskSummary, ...] = ()
    retired: bool = False  # the orchestrator no longer holds the tasks: outputs are not here
    tokens: int = 0  # the run's usage so far (docs/governance.md)
    cost_micros: int = 0
    tenant: str = ""
    priority: int = 0
