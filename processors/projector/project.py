"""Fold functions: one event (with its log time) → the SQL statements that apply it.

Pure apart from building SQL text: no connection, no clock. Every time written is the
event's log timestamp, so projecting the same log twice gives the same rows. Events
the read model does not show map to no statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskplane.contract import messages as m
from taskplane.contract.breaker import BreakerState
from taskplane.contract.governance import Usage, usage_totals
from taskplane.contract.state import RunStatus, TaskStatus
from taskplane.contract.status import KEPT_AT_RUN_END, move

Statement = tuple[str, Sequence[Any]]

_KEPT = sorted(status.value for status in KEPT_AT_RUN_END)


def statements(event: object, at_ms: int) -> list[Statement]:
    """What ``event`` (from ``events``) changes in the read model. The status words and
    when they change are the shared fold's (``contract/status.py``: ``move``)."""
    usage = getattr(event, "usage", None)
    if usage:  # on tool calls and attempt outcomes only (docs/governance.md)
        return [*_statements(event, at_ms), *_usage(event.run_id, event.task, usage, at_ms)]  # type: ignore[attr-defined]
    return _statements(event, at_ms)


def _usage(run: str, task: str, usage: Sequence[Usage], at_ms: int) -> list[Statement]:
    tokens, cost = usage_totals(usage)
    return [
        ("UPDATE runs SET tokens = tokens + %s, cost_micros = cost_micros + %s, updated_ms = %s WHERE run_id = %s",
         (tokens, cost, at_ms, run)),
        ("UPDATE tasks SET tokens = tokens + %s, cost_micros = cost_micros + %s WHERE run_id = %s AND task = %s",
         (tokens, cost, run, task)),
    ]


def _statements(event: object, at_ms: int) -> list[Statement]:
    change = move(event)
    to = change.to.value if change.to is not None else None
    match event:
        case m.RunSubmitted():
            return _run_submitted(event, at_ms)
        case m.TaskReady(run_id=run, task=task, attempt=attempt):
            return [(
                "UPDATE tasks SET status = %s, attempt = %s, holder = NULL, lease_expires_ms = NULL,"
                " retry_due_ms = NULL, blocked_by = NULL, first_ready_ms = COALESCE(first_ready_ms, %s),"
                " waiting_since_ms = %s, updated_ms = %s WHERE run_id = %s AND task = %s",
                (to, attempt, at_ms, at_ms, at_ms, run, task),
            )]
        case m.LeaseGranted(run_id=run, task=task, attempt=attempt, worker_id=worker, epoch=epoch):
            return [
                (
                    "UPDATE tasks SET status = %s, attempt = %s, epoch = %s, holder = %s,"
                    " lease_expires_ms = %s, waiting_since_ms = NULL, updated_ms = %s"
                    " WHERE run_id = %s AND task = %s",
                    (to, attempt, epoch, worker, event.expires_ms, at_ms, run, task),
                ),
                (
                    "INSERT INTO attempts (run_id, task, epoch, attempt, worker_id, status, started_ms)"
                    " VALUES (%s, %s, %s, %s, %s, 'running', %s) ON CONFLICT DO NOTHING",
                    (run, task, epoch, attempt, worker, at_ms),
                ),
            ]
        case m.LeaseRenewed(run_id=run, task=task, epoch=epoch, expires_ms=expires):
            return [
                (
                    "UPDATE tasks SET lease_expires_ms = %s, lease_renewals = lease_renewals + 1,"
                    " updated_ms = %s WHERE run_id = %s AND task = %s",
                    (expires, at_ms, run, task),
                ),
                (
                    "UPDATE attempts SET renewals = renewals + 1 WHERE run_id = %s AND task = %s AND epoch = %s",
                    (run, task, epoch),
                ),
            ]
        case m.LeaseExpired(run_id=run, task=task, epoch=epoch):
            return _lease_ended(run, task, epoch, "expired", to, at_ms)
        case m.LeaseReleased(run_id=run, task=task, epoch=epoch):
            return _lease_ended(run, task, epoch, "released", to, at_ms)
        case m.ToolCallSucceeded() | m.ToolCallFailed():
            ok = isinstance(event, m.ToolCallSucceeded)
            return [(
                "INSERT INTO tool_calls (run_id, task, epoch, key, tool, call_index, ok, result, error, at_ms)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, task, epoch, key)"
                " DO UPDATE SET ok = EXCLUDED.ok, result = EXCLUDED.result, error = EXCLUDED.error,"
                " at_ms = EXCLUDED.at_ms",
                (
                    event.run_id, event.task, event.epoch, event.key, event.tool, event.call_index, ok,
                    event.result if isinstance(event, m.ToolCallSucceeded) else None,
                    event.error if isinstance(event, m.ToolCallFailed) else None,
                    at_ms,
                ),
            )]
        case m.TaskSucceeded(run_id=run, task=task, epoch=epoch, output=output):
            return [
                (
                    "UPDATE tasks SET status = %s, output = %s, holder = NULL, lease_expires_ms = NULL,"
                    " finished_ms = %s, waiting_since_ms = NULL, updated_ms = %s WHERE run_id = %s AND task = %s",
                    (to, output, at_ms, at_ms, run, task),
                ),
                (
                    "UPDATE attempts SET status = 'succeeded', ended_ms = %s"
                    " WHERE run_id = %s AND task = %s AND epoch = %s",
                    (at_ms, run, task, epoch),
                ),
                (
                    "UPDATE runs SET tasks_succeeded = tasks_succeeded + 1, updated_ms = %s WHERE run_id = %s",
                    (at_ms, run),
                ),
            ]
        case m.AttemptFailed(run_id=run, task=task, epoch=epoch, error=error, kind=kind, counted=counted):
            return [
                (
                    "UPDATE tasks SET status = %s, last_error = %s, failures = failures + %s, holder = NULL,"
                    " lease_expires_ms = NULL, updated_ms = %s WHERE run_id = %s AND task = %s",
                    (to, error, 1 if counted else 0, at_ms, run, task),
                ),
                (
                    "UPDATE attempts SET status = 'failed', error = %s, kind = %s, counted = %s,"
                    " ended_ms = COALESCE(ended_ms, %s) WHERE run_id = %s AND task = %s AND epoch = %s",
                    (error, kind.value, counted, at_ms, run, task, epoch),
                ),
            ]
        case m.RetryScheduled(run_id=run, task=task, attempt=attempt, due_ms=due):
            return [(
                "UPDATE tasks SET status = %s, attempt = %s, retry_due_ms = %s,"
                " waiting_since_ms = COALESCE(waiting_since_ms, %s), updated_ms = %s"
                " WHERE run_id = %s AND task = %s",
                (to, attempt, due, at_ms, at_ms, run, task),
            )]
        case m.TaskDeadLettered(run_id=run, task=task, attempts=attempts, error=error, at_ms=dead_ms):
            return [
                (
                    "UPDATE tasks SET status = %s, last_error = %s, holder = NULL,"
                    " lease_expires_ms = NULL, retry_due_ms = NULL, waiting_since_ms = NULL, updated_ms = %s"
                    " WHERE run_id = %s AND task = %s",
                    (to, error, at_ms, run, task),
                ),
                (
                    "INSERT INTO dead_letters (run_id, task, system, status, attempts, error, dead_lettered_ms)"
                    " SELECT %s, %s, system, 'open', %s, %s, %s FROM runs WHERE run_id = %s"
                    " ON CONFLICT (run_id, task) DO UPDATE SET status = 'open', attempts = EXCLUDED.attempts,"
                    " error = EXCLUDED.error, dead_lettered_ms = EXCLUDED.dead_lettered_ms,"
                    " times = dead_letters.times + 1, replayed_ms = NULL, replayed_by = NULL",
                    (run, task, attempts, error, dead_ms, run),
                ),
            ]
        case m.TaskBlocked(run_id=run, task=task, blocked_by=blocker):
            return [(
                "UPDATE tasks SET status = %s, blocked_by = %s, updated_ms = %s"
                " WHERE run_id = %s AND task = %s",
                (to, blocker, at_ms, run, task),
            )]
        case m.TaskReplayed(run_id=run, task=task, attempt=attempt, requested_by=who):
            return [
                (
                    "UPDATE dead_letters SET status = 'replayed', replayed_ms = %s, replayed_by = %s"
                    " WHERE run_id = %s AND task = %s",
                    (at_ms, who, run, task),
                ),
                (
                    "UPDATE tasks SET status = %s, failures = 0, attempt = %s, retry_due_ms = NULL,"
                    " blocked_by = NULL, updated_ms = %s WHERE run_id = %s AND task = %s",
                    (to, attempt, at_ms, run, task),
                ),
                _unblocked(run, at_ms),
                (
                    "UPDATE runs SET status = 'running', finished_ms = NULL, reason = NULL, updated_ms = %s"
                    " WHERE run_id = %s",
                    (at_ms, run),
                ),
            ]
        case m.RunSucceeded(run_id=run, finished_ms=finished):
            return _run_finished(run, change.run, None, finished, at_ms, change.leftover)
        case m.RunFailed(run_id=run, reason=reason, finished_ms=finished):
            return _run_finished(run, change.run, reason, finished, at_ms, change.leftover)
        case m.RunCancelled(run_id=run, reason=reason, finished_ms=finished):
            return _run_finished(run, change.run, reason, finished, at_ms, change.leftover)
        case m.ApprovalRequested(run_id=run, task=task):
            # Waiting for a person since now (the lease went back with LeaseReleased before).
            return [(
                "UPDATE tasks SET status = %s, holder = NULL, lease_expires_ms = NULL,"
                " waiting_since_ms = %s, updated_ms = %s WHERE run_id = %s AND task = %s",
                (to, at_ms, at_ms, run, task),
            )]
        case m.CommandRejected(run_id=run):
            return [(
                "UPDATE runs SET rejections = rejections + 1 WHERE run_id = %s",
                (run,),
            )]
    return []


def breaker_statements(tool: str, state: BreakerState | None, at_ms: int) -> list[Statement]:
    """What a record of the compacted ``breakers`` topic changes (None: a tombstone)."""
    if state is None:
        return [("DELETE FROM breakers WHERE tool = %s", (tool,))]
    return [(
        "INSERT INTO breakers (tool, status, consecutive_failures, failure_threshold, cooldown_ms,"
        " opened_ms, half_open_due_ms, transitions, updated_ms) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (tool) DO UPDATE SET status = EXCLUDED.status,"
        " consecutive_failures = EXCLUDED.consecutive_failures, failure_threshold = EXCLUDED.failure_threshold,"
        " cooldown_ms = EXCLUDED.cooldown_ms, opened_ms = EXCLUDED.opened_ms,"
        " half_open_due_ms = EXCLUDED.half_open_due_ms, transitions = EXCLUDED.transitions,"
        " updated_ms = EXCLUDED.updated_ms",
        (
            tool, state.status.value, state.consecutive_failures, state.failure_threshold, state.cooldown_ms,
            state.opened_ms, state.half_open_due_ms, state.transitions, at_ms,
        ),
    )]


def _run_submitted(event: m.RunSubmitted, at_ms: int) -> list[Statement]:
    plan = event.plan
    out: list[Statement] = [(
        "INSERT INTO runs (run_id, system, version, status, input, idempotency_key, submitted_ms,"
        " tasks_total, updated_ms, tenant, priority) VALUES (%s, %s, %s, 'running', %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (event.run_id, plan.name, plan.version, event.input, event.idempotency_key, event.submitted_ms,
         len(plan.agents), at_ms, event.tenant, event.priority),
    )]
    for position, agent in enumerate(plan.agents):
        out.append((
            "INSERT INTO tasks (run_id, task, position, dependencies, tools, status, updated_ms)"
            " VALUES (%s, %s, %s, %s, %s, 'pending', %s) ON CONFLICT DO NOTHING",
            (event.run_id, agent.name, position, list(agent.dependencies), [t.name for t in agent.tools], at_ms),
        ))
    return out


def _lease_ended(run: str, task: str, epoch: int, how: str, to: str | None, at_ms: int) -> list[Statement]:
    return [
        (
            "UPDATE tasks SET status = %s, holder = NULL, lease_expires_ms = NULL,"
            " waiting_since_ms = CASE WHEN status = 'leased' THEN %s ELSE waiting_since_ms END,"
            " updated_ms = %s WHERE run_id = %s AND task = %s",
            (to, at_ms, at_ms, run, task),
        ),
        (
            "UPDATE attempts SET status = %s, ended_ms = %s"
            " WHERE run_id = %s AND task = %s AND epoch = %s AND status = 'running'",
            (how, at_ms, run, task, epoch),
        ),
    ]


def _unblocked(run: str, at_ms: int) -> Statement:
    """The shared rule after a replay (``contract/status.py``: ``blocker``): a blocked
    task waits again unless a task upstream of it is still dead-lettered; the nearest
    such task (fewest hops, then plan order) blocks it now."""
    return (
        "WITH RECURSIVE up (task, ancestor, hops) AS ("
        " SELECT b.task, d.dep, 1 FROM tasks b CROSS JOIN LATERAL unnest(b.dependencies) AS d(dep)"
        " WHERE b.run_id = %s AND b.status = 'blocked'"
        " UNION"
        " SELECT up.task, d.dep, up.hops + 1 FROM up JOIN tasks p ON p.run_id = %s AND p.task = up.ancestor"
        " CROSS JOIN LATERAL unnest(p.dependencies) AS d(dep)"
        "), nearest AS ("
        " SELECT DISTINCT ON (up.task) up.task, up.ancestor FROM up"
        " JOIN tasks a ON a.run_id = %s AND a.task = up.ancestor AND a.status = 'dead_lettered'"
        " ORDER BY up.task, up.hops, a.position"
        ")"
        " UPDATE tasks t SET status = CASE WHEN n.ancestor IS NULL THEN %s ELSE t.status END,"
        " blocked_by = n.ancestor, updated_ms = %s"
        " FROM tasks b LEFT JOIN nearest n ON n.task = b.task"
        " WHERE b.run_id = %s AND b.status = 'blocked' AND t.run_id = b.run_id AND t.task = b.task",
        (run, run, run, TaskStatus.PENDING.value, at_ms, run),
    )


def _run_finished(
    run: str, status: RunStatus | None, reason: str | None, finished: int, at_ms: int, leftover: TaskStatus | None
) -> list[Statement]:
    assert status is not None
    out: list[Statement] = [(
        "UPDATE runs SET status = %s, reason = %s, finished_ms = %s, updated_ms = %s WHERE run_id = %s",
        (status.value, reason, finished, at_ms, run),
    )]
    if leftover is not None:
        out.append((
            "UPDATE tasks SET status = %s, holder = NULL, lease_expires_ms = NULL, waiting_since_ms = NULL,"
            " updated_ms = %s WHERE run_id = %s AND status <> ALL(%s)",
            (leftover.value, at_ms, run, _KEPT),
        ))
    return out
