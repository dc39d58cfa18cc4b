"""``evolve``: the run state after one event. A pure fold; dicts are copy-on-write, so
a state once returned is never changed by a later event."""

from __future__ import annotations

from typing import assert_never

from taskplane.contract.errors import TaskplaneError
from taskplane.contract.messages import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    AttemptFailed,
    AttemptRecord,
    CommandRejected,
    Event,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    LeaseRenewed,
    RetryScheduled,
    RunCancelled,
    RunFailed,
    RunForgotten,
    RunRetired,
    RunSubmitted,
    RunSucceeded,
    TaskBlocked,
    TaskDeadLettered,
    TaskReady,
    TaskReplayed,
    TaskSucceeded,
    ToolCallFailed,
    ToolCallSucceeded,
)
from taskplane.contract.plan import SystemPlan
from taskplane.contract.records import replace
from taskplane.contract.state import (
    RunState,
    RunStatus,
    TaskState,
    TaskStatus,
    ToolCallRecord,
)
from taskplane.contract.status import KEPT_AT_RUN_END, blocker
from taskplane.processors.orchestrator.approvals import evolved as approvals_after
from taskplane.processors.orchestrator.budget import fold_usage


class InconsistentLog(TaskplaneError, ValueError):
    """An event that cannot follow the state it is folded into (e.g. a task event
    before ``RunSubmitted``): the log was not written by this decider. Not retryable:
    folding the same log fails the same way."""

    retryable = False


def downstream(plan: SystemPlan, name: str) -> list[str]:
    """Transitive dependents of ``name`` in plan order."""
    found: set[str] = set()
    frontier = [name]
    while frontier:
        for child in plan.downstream(frontier.pop()):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return [agent.name for agent in plan.agents if agent.name in found]


def evolve(state: RunState | None, event: Event) -> RunState | None:
    if isinstance(event, CommandRejected):
        return state
    if isinstance(event, RunSubmitted):
        if state is not None:
            return state
        tasks = {agent.name: TaskState(agent.name) for agent in event.plan.agents}
        return RunState(event.run_id, event.plan, event.input, event.submitted_ms,
                        event.idempotency_key, tasks=tasks, tenant=event.tenant, priority=event.priority)
    if state is None:
        raise InconsistentLog(f"{type(event).__name__} for run {event.run_id} before RunSubmitted")
    if isinstance(event, RunForgotten):
        return None  # the runtime writes a tombstone to the changelog
    return _evolve_run(state, event)


def _task(state: RunState, name: str) -> TaskState:
    try:
        return state.tasks[name]
    except KeyError:
        raise InconsistentLog(f"run {state.run_id} has no task {name!r}") from None


def _with_task(state: RunState, task: TaskState) -> RunState:
    return replace(state, tasks={**state.tasks, task.name: task})


def _evolve_run(state: RunState, event: Event) -> RunState:
    match event:
        case TaskReady(task=name, attempt=attempt):
            task = replace(_task(state, name), status=TaskStatus.READY, attempt=attempt, holder=None,
                           lease_expires_ms=None, retry_due_ms=None, blocked_by=None)
            return _with_task(state, task)
        case LeaseGranted(task=name, attempt=attempt, worker_id=worker, epoch=epoch, expires_ms=expires):
            task = replace(_task(state, name), status=TaskStatus.LEASED, attempt=attempt, epoch=epoch,
                           holder=worker, lease_expires_ms=expires)
            return _with_task(state, task)
        case LeaseRenewed(task=name, expires_ms=expires):
            return _with_task(state, replace(_task(state, name), lease_expires_ms=expires))
        case LeaseExpired(task=name):
            # The holder stays until AttemptFailed records it in the history.
            task = replace(_task(state, name), status=TaskStatus.BACKOFF, lease_expires_ms=None)
            return _with_task(state, task)
        case LeaseReleased(task=name):
            task = replace(_task(state, name), status=TaskStatus.READY, holder=None, lease_expires_ms=None)
            return _with_task(state, task)
        case ToolCallSucceeded(key=key, tool=tool, call_index=index, result=result, epoch=epoch):
            record = ToolCallRecord(key, tool, index, True, result, None, epoch)
            state = fold_usage(state, event.task, event.usage) if event.usage else state
            return replace(state, journal={**state.journal, key: record})
        case ToolCallFailed(key=key, tool=tool, call_index=index, error=error, epoch=epoch):
            state = fold_usage(state, event.task, event.usage) if event.usage else state
            known = state.journal.get(key)
            if known is not None and known.ok:
                return state  # a success is never overwritten: the side effect happened
            record = ToolCallRecord(key, tool, index, False, None, error, epoch)
            return replace(state, journal={**state.journal, key: record})
        case TaskSucceeded(task=name, output=output):
            state = fold_usage(state, name, event.usage) if event.usage else state
            task = replace(_task(state, name), status=TaskStatus.SUCCEEDED, output=output, holder=None,
                           lease_expires_ms=None)
            return _with_task(state, task)
        case AttemptFailed():
            state = fold_usage(state, event.task, event.usage) if event.usage else state
            return _with_task(state, _failed(_task(state, event.task), event))
        case RetryScheduled(task=name, attempt=attempt, due_ms=due):
            task = replace(_task(state, name), status=TaskStatus.BACKOFF, attempt=attempt, retry_due_ms=due)
            return _with_task(state, task)
        case TaskDeadLettered(task=name, error=error):
            task = replace(_task(state, name), status=TaskStatus.DEAD_LETTERED, retry_due_ms=None,
                           last_error=error)
            return _with_task(state, task)
        case TaskBlocked(task=name, blocked_by=blocker):
            task = replace(_task(state, name), status=TaskStatus.BLOCKED, blocked_by=blocker)
            return _with_task(state, task)
        case TaskReplayed(task=name, attempt=attempt):
            task = replace(_task(state, name), status=TaskStatus.PENDING, attempt=attempt, failures=0,
                           retry_due_ms=None, blocked_by=None)
            return _unblocked(_with_task(state, task))
        case RunSucceeded(finished_ms=finished):
            return replace(state, status=RunStatus.SUCCEEDED, finished_ms=finished)
        case RunFailed(reason=reason, finished_ms=finished):
            return _finished(state, RunStatus.FAILED, TaskStatus.FAILED, reason, finished)
        case RunCancelled(reason=reason, finished_ms=finished):
            return _finished(state, RunStatus.CANCELLED, TaskStatus.CANCELLED, reason, finished)
        case RunRetired(at_ms=at):
            # The final record: what a duplicate submit or a late command is answered from.
            return replace(state, input="", tasks={}, journal={}, retired_ms=at, approvals={})
        case ApprovalRequested(task=name):
            # The lease went back with the request (LeaseReleased before it): no holder, no timer.
            task = replace(_task(state, name), status=TaskStatus.AWAITING_APPROVAL, holder=None,
                           lease_expires_ms=None)
            return replace(_with_task(state, task), approvals=approvals_after(state, event))
        case ApprovalGranted() | ApprovalDenied() | ApprovalExpired():
            return replace(state, approvals=approvals_after(state, event))
        case RunSubmitted() | RunForgotten() | CommandRejected():
            return state
        case _:
            assert_never(event)


def _failed(task: TaskState, event: AttemptFailed) -> TaskState:
    record = AttemptRecord(event.attempt, event.epoch, task.holder, event.error)
    return replace(
        task,
        status=TaskStatus.BACKOFF,
        failures=task.failures + (1 if event.counted else 0),
        holder=None,
        lease_expires_ms=None,
        retry_due_ms=None,
        last_error=event.error,
        last_failure_kind=event.kind,
        history=(*task.history, record),
    )


def _unblocked(state: RunState) -> RunState:
    """After a replay: a blocked task waits again (PENDING) unless another of its
    upstream tasks is still dead-lettered, which then becomes its blocker (the shared
    rule, ``contract/status.py``)."""
    tasks = dict(state.tasks)
    statuses = {name: task.status for name, task in state.tasks.items()}
    for name, task in state.tasks.items():
        if task.status is not TaskStatus.BLOCKED:
            continue
        still = blocker(state.plan, statuses, name)
        if still is None:
            tasks[name] = replace(task, status=TaskStatus.PENDING, blocked_by=None)
        elif still != task.blocked_by:
            tasks[name] = replace(task, blocked_by=still)
    return replace(state, tasks=tasks)


def _finished(state: RunState, run: RunStatus, leftover: TaskStatus, reason: str, finished_ms: int) -> RunState:
    tasks = {
        name: task if task.status in KEPT_AT_RUN_END
        else replace(task, status=leftover, holder=None, lease_expires_ms=None, retry_due_ms=None)
        for name, task in state.tasks.items()
    }
    return replace(state, status=run, finished_ms=finished_ms, reason=reason, tasks=tasks)
