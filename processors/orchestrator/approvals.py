"""Approvals: a call to an approval-required tool waits for a person.

The lease holder asks (``RequestApproval``): its lease goes back and the task waits as
``awaiting_approval``, holding no worker. A signed ``DecideApproval`` (checked by the
decider's entry, ``contract/approvals.py``) grants it, and the task is ready for a new
attempt whose replay reaches the same call, which the grant then lets run once; or denies
it, and the task fails ``approval_denied`` (no retry). A request past its TTL on a
``Tick`` (or when a decision arrives late) fails it ``approval_timeout``. Pure: time is
the command's ``at_ms``. Semantics: docs/governance.md, "Approvals".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from taskplane.contract.decider import DecisionError
from taskplane.contract.messages import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    AttemptFailed,
    DecideApproval,
    Event,
    FailureKind,
    LeaseReleased,
    RequestApproval,
    TaskReady,
)
from taskplane.contract.plan import ToolPlan
from taskplane.contract.state import ApprovalRecord, RunState, TaskState, TaskStatus

APPROVAL_DENIED = "approval_denied"
APPROVAL_TIMEOUT = "approval_timeout"
PREVIEW_CHARS = 500
PENDING, GRANTED, DENIED, EXPIRED = "pending", "granted", "denied", "expired"


class Batch(Protocol):
    @property
    def state(self) -> RunState: ...

    def add(self, event: Event) -> None: ...


Holder = Callable[[RunState, str, str, int], TaskState]  # the fenced lease check
AfterFailure = Callable[[Batch, str, FailureKind, int, int], None]  # the retry rule


def approval_tool(state: RunState, task: str, tool: str) -> ToolPlan | None:
    """The task's tool plan when that tool requires approval."""
    for plan in state.plan.agent(task).tools:
        if plan.name == tool and plan.approval_required:
            return plan
    return None


def request(batch: Batch, command: RequestApproval, at_ms: int, holder: Holder) -> None:
    state = batch.state
    task = holder(state, command.task, command.worker_id, command.epoch)
    tool = approval_tool(state, task.name, command.tool)
    if tool is None:
        raise DecisionError(f"tool {command.tool!r} of task {task.name!r} does not require approval")
    known = state.approvals.get(command.key)
    if known is not None and known.status in (PENDING, GRANTED):
        raise DecisionError(f"approval {command.key} already {known.status}")
    # A denied or expired one may be asked again only after an operator replayed the task.
    ttl = tool.approval_ttl_ms
    batch.add(LeaseReleased(state.run_id, task.name, task.epoch, command.worker_id))
    batch.add(ApprovalRequested(state.run_id, task.name, command.key, command.tool, command.call_index,
                                command.input_preview[:PREVIEW_CHARS], command.reason[:PREVIEW_CHARS], ttl,
                                at_ms, at_ms + ttl, task.attempt, task.epoch))


def decide(batch: Batch, command: DecideApproval, at_ms: int, after_failure: AfterFailure) -> None:
    """A person's decision; its signature was checked before."""
    state = batch.state
    known = state.approvals.get(command.approval_id)
    if known is None:
        raise DecisionError(f"unknown approval {command.approval_id}")
    if known.status != PENDING:
        raise DecisionError(f"approval {command.approval_id} already {known.status}")
    task = state.tasks[known.task]
    if task.status is not TaskStatus.AWAITING_APPROVAL:  # the evolve keeps them together; guard the fold
        raise DecisionError(f"task {known.task!r} is {task.status.value}, not awaiting approval")
    if known.expires_ms <= at_ms:  # the clock passed the TTL before the decision reached us
        _expire(batch, known, at_ms, after_failure)
        return
    if command.granted:
        batch.add(ApprovalGranted(state.run_id, known.task, known.approval_id, command.who, command.decided_ms,
                                  command.reason, at_ms))
        batch.add(TaskReady(state.run_id, known.task, task.attempt + 1))
        return
    batch.add(ApprovalDenied(state.run_id, known.task, known.approval_id, command.who, command.decided_ms,
                             command.reason, at_ms))
    _fail(batch, task, APPROVAL_DENIED, at_ms, after_failure)


def expire_due(batch: Batch, name: str, now_ms: int, at_ms: int, after_failure: AfterFailure) -> None:
    """On a tick: the task's pending approval past its TTL fails the task."""
    for record in _pending(batch.state, name):
        if record.expires_ms <= now_ms:
            _expire(batch, record, at_ms, after_failure)
            return


def next_expiry(state: RunState) -> int | None:
    """The earliest TTL of a pending approval (a timer of the run)."""
    return min((r.expires_ms for r in state.approvals.values() if r.status == PENDING
                and state.tasks[r.task].status is TaskStatus.AWAITING_APPROVAL), default=None)


def granted_not_run(state: RunState, task: str) -> tuple[str, ...]:
    """Keys of the task's granted calls with no recorded success: what a new attempt may run."""
    return tuple(sorted(key for key, r in state.approvals.items() if r.task == task and r.status == GRANTED
                        and not ((call := state.journal.get(key)) is not None and call.ok)))


def evolved(state: RunState, event: Event) -> dict[str, ApprovalRecord]:
    """The run's approvals after one approval event."""
    approvals = state.approvals
    match event:
        case ApprovalRequested():
            record = ApprovalRecord(event.approval_id, event.task, event.tool, event.call_index, PENDING,
                                    event.requested_ms, event.expires_ms, event.input_preview, event.reason)
        case ApprovalGranted() | ApprovalDenied():
            known = approvals[event.approval_id]
            record = ApprovalRecord(known.approval_id, known.task, known.tool, known.call_index,
                                    GRANTED if isinstance(event, ApprovalGranted) else DENIED,
                                    known.requested_ms, known.expires_ms, known.input_preview, known.reason,
                                    event.who, event.decided_ms, event.reason)
        case ApprovalExpired():
            known = approvals[event.approval_id]
            record = ApprovalRecord(known.approval_id, known.task, known.tool, known.call_index, EXPIRED,
                                    known.requested_ms, known.expires_ms, known.input_preview, known.reason)
        case _:
            return approvals
    return {**approvals, record.approval_id: record}


def _pending(state: RunState, name: str) -> list[ApprovalRecord]:
    return [r for r in state.approvals.values() if r.task == name and r.status == PENDING]


def _expire(batch: Batch, record: ApprovalRecord, at_ms: int, after_failure: AfterFailure) -> None:
    state = batch.state
    batch.add(ApprovalExpired(state.run_id, record.task, record.approval_id, at_ms))
    _fail(batch, state.tasks[record.task], APPROVAL_TIMEOUT, at_ms, after_failure)


def _fail(batch: Batch, task: TaskState, error: str, at_ms: int, after_failure: AfterFailure) -> None:
    # Not retried: a person said no (or nobody answered); an operator may replay it.
    batch.add(AttemptFailed(batch.state.run_id, task.name, task.attempt, task.epoch, error,
                            FailureKind.NON_RETRYABLE, True))
    after_failure(batch, task.name, FailureKind.NON_RETRYABLE, 0, at_ms)
