"""The status of a run and of each of its tasks: one fold of the run's events.

Three readers fold the same events: the orchestrator (``evolve``, which keeps far more
than the status), the read model (the projector's SQL) and the client (``RunView``).
What each event does to the status words is said once, here: ``move`` names the change
and ``fold_status`` applies it. The projector turns a ``Move`` into SQL, the client
folds with ``fold_status``, and ``evolve`` is held to the same result by the conformance
suite (``tests/contract/test_status_conformance.py``). The words: docs/orchestrator.md,
"Status words".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from taskplane.contract import messages as m
from taskplane.contract.plan import SystemPlan
from taskplane.contract.state import RunStatus, TaskStatus

# Task statuses a finished run keeps; every other task ends as the run's ``leftover``.
KEPT_AT_RUN_END = frozenset({TaskStatus.SUCCEEDED, TaskStatus.DEAD_LETTERED})


class Move(NamedTuple):
    """What one event does to the statuses of its run."""

    task: str | None = None  # the task the event names
    to: TaskStatus | None = None  # that task's new status (None: unchanged)
    run: RunStatus | None = None  # the run's new status
    leftover: TaskStatus | None = None  # the run ended: every task not kept ends so
    unblock: bool = False  # a replay: blocked tasks wait again unless still blocked (``blocker``)
    blocked_by: str | None = None  # with ``to`` BLOCKED: the dead-lettered task


_NOTHING = Move()


def move(event: object) -> Move:
    """The status change ``event`` causes (``Move()`` for events that change none)."""
    match event:
        case m.TaskReady(task=task) | m.LeaseReleased(task=task):
            return Move(task, TaskStatus.READY)
        case m.LeaseGranted(task=task):
            return Move(task, TaskStatus.LEASED)
        case m.LeaseExpired(task=task) | m.AttemptFailed(task=task) | m.RetryScheduled(task=task):
            # A failed or expired attempt waits for its retry (or its dead letter, or the
            # run's failure, which the same decision records next).
            return Move(task, TaskStatus.BACKOFF)
        case m.TaskSucceeded(task=task):
            return Move(task, TaskStatus.SUCCEEDED)
        case m.TaskDeadLettered(task=task):
            return Move(task, TaskStatus.DEAD_LETTERED)
        case m.TaskBlocked(task=task, blocked_by=blocker):
            return Move(task, TaskStatus.BLOCKED, blocked_by=blocker)
        case m.TaskReplayed(task=task):
            return Move(task, TaskStatus.PENDING, unblock=True)
        case m.ApprovalRequested(task=task):
            # Follows the attempt's LeaseReleased: the task waits for a person, holding no worker.
            return Move(task, TaskStatus.AWAITING_APPROVAL)
        case m.RunSucceeded():
            return Move(run=RunStatus.SUCCEEDED)
        case m.RunFailed():
            return Move(run=RunStatus.FAILED, leftover=TaskStatus.FAILED)
        case m.RunCancelled():
            return Move(run=RunStatus.CANCELLED, leftover=TaskStatus.CANCELLED)
    return _NOTHING


def blocker(plan: SystemPlan, statuses: Mapping[str, TaskStatus], name: str) -> str | None:
    """The dead-lettered task upstream of ``name`` that blocks it: the nearest (fewest
    dependency hops), ties broken by plan order; None when none is dead-lettered."""
    depth: dict[str, int] = {}
    frontier = list(plan.agent(name).dependencies)
    hops = 1
    while frontier:  # breadth first, so each task is reached at its fewest hops
        following: list[str] = []
        for current in frontier:
            if current not in depth:
                depth[current] = hops
                following.extend(plan.agent(current).dependencies)
        frontier, hops = following, hops + 1
    position = {agent.name: index for index, agent in enumerate(plan.agents)}
    dead = [up for up in depth if statuses.get(up) is TaskStatus.DEAD_LETTERED]
    return min(dead, key=lambda up: (depth[up], position[up]), default=None)


@dataclass(frozen=True, slots=True)
class Statuses:
    """The statuses of one run. ``plan`` may be a reference without agents (a client
    that has not resolved it yet): tasks then appear as events name them."""

    plan: SystemPlan
    run: RunStatus = RunStatus.RUNNING
    tasks: dict[str, TaskStatus] = field(default_factory=dict)
    blocked_by: dict[str, str] = field(default_factory=dict)


def fold_status(statuses: Statuses | None, event: object) -> Statuses | None:
    """``statuses`` after ``event``; None until the run's ``RunSubmitted``. Pure."""
    if isinstance(event, m.RunSubmitted):
        if statuses is not None:
            return statuses
        return Statuses(event.plan, tasks={agent.name: TaskStatus.PENDING for agent in event.plan.agents})
    change = move(event)
    if statuses is None or change is _NOTHING:
        return statuses
    tasks, blocked_by, run = dict(statuses.tasks), dict(statuses.blocked_by), statuses.run
    if change.task is not None and change.to is not None:
        tasks[change.task] = change.to
        if change.blocked_by is not None:
            blocked_by[change.task] = change.blocked_by
        else:
            blocked_by.pop(change.task, None)
    if change.unblock and statuses.plan.agents:
        for name in [n for n, s in tasks.items() if s is TaskStatus.BLOCKED]:
            still = blocker(statuses.plan, tasks, name)
            if still is None:
                tasks[name] = TaskStatus.PENDING
                blocked_by.pop(name, None)
            else:
                blocked_by[name] = still
    elif change.unblock:  # no plan to read dependencies from: what the replayed task blocked waits
        for name in [n for n, by in blocked_by.items() if by == change.task]:
            tasks[name] = TaskStatus.PENDING
            del blocked_by[name]
    if change.run is not None:
        run = change.run
    if change.leftover is not None:
        for name, status in tasks.items():
            if status not in KEPT_AT_RUN_END:
                tasks[name] = change.leftover
                blocked_by.pop(name, None)
    return Statuses(statuses.plan, run, tasks, blocked_by)


def statuses_of(events: Iterable[object], plan: SystemPlan | None = None) -> Statuses | None:
    """The statuses a run's events lead to; ``plan`` resolves a referenced plan."""
    folded: Statuses | None = None
    for event in events:
        if plan is not None and isinstance(event, m.RunSubmitted) and not event.plan.agents:
            event = m.RunSubmitted(event.run_id, plan, event.input, event.submitted_ms, event.idempotency_key)
        folded = fold_status(folded, event)
    return folded
