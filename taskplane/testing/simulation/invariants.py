"""The invariants checked after each simulated seed: the built-in ones (what taskplane
promises, ARCHITECTURE.md "Invariants") and the user's, marked with ``@invariant``.

Built-in checks read the simulated log, not the deciders' state, so a decider that folds
a wrong state is caught by what it recorded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any, TypeVar

from taskplane.contract import messages as m
from taskplane.contract.breaker import (
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    FailureCounted,
    FailuresReset,
)
from taskplane.contract.messages import FailureKind
from taskplane.contract.permits import PermitGranted, PermitReleased
from taskplane.contract.plan import SystemPlan
from taskplane.processors.breaker.permits import window_bound
from taskplane.processors.orchestrator.backoff import base_backoff_ms
from taskplane.testing.simulation.cron_checks import check_cron
from taskplane.testing.simulation.result import SimulationResult, Violation

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__taskplane_invariant__"
ENDED = ("succeeded", "failed", "cancelled", "dead_lettered")


def invariant(function: F) -> F:
    """Mark ``function(result)`` (or ``function()``) as an invariant ``taskplane simulate``
    checks after each seed: an ``AssertionError`` is a violation."""
    setattr(function, _MARK, True)
    return function


def user_invariants(module: ModuleType) -> list[Callable[..., Any]]:
    return [value for value in vars(module).values() if callable(value) and getattr(value, _MARK, False)]


def check_user(functions: list[Callable[..., Any]], result: SimulationResult) -> list[Violation]:
    found = []
    for function in functions:
        name = getattr(function, "__name__", repr(function))
        try:
            if inspect.signature(function).parameters:
                function(result)
            else:
                function()
        except AssertionError as error:
            found.append(Violation(name, str(error) or "assertion failed"))
        except Exception as error:  # an invariant that crashes is not a pass
            found.append(Violation(name, f"raised {type(error).__name__}: {error}"))
    return found


def check_builtin(plan: SystemPlan, result: SimulationResult) -> list[Violation]:
    found: list[Violation] = []
    by_run: dict[str, list[Any]] = {}
    for record in result.events:
        by_run.setdefault(record.run_id, []).append(record)
    for run in result.runs:
        if run.status not in ENDED:
            found.append(Violation("every run ends", f"run {run.run_id} {run.reason}", (run.run_id,)))
    for run_id, records in by_run.items():
        found += _run_checks(plan, run_id, records)
    found += _journal(plan, result)
    found += _breakers(plan, result)
    found += _approvals(plan, result)
    found += _permits(plan, result)
    found += check_cron(result)
    return found


def _run_checks(plan: SystemPlan, run_id: str, records: list[Any]) -> list[Violation]:
    found: list[Violation] = []
    policy = plan.execution
    dependencies = {agent.name: agent.dependencies for agent in plan.agents}
    succeeded: set[str] = set()
    leases: dict[str, tuple[int, bool]] = {}  # task -> (latest epoch, still live)
    failures: dict[str, int] = {}
    for record in records:
        event = record.event
        match event:
            case m.TaskReady(task=task) | m.LeaseGranted(task=task) if task in dependencies:
                missing = [d for d in dependencies[task] if d not in succeeded]
                if missing:
                    found.append(Violation("DAG order", f"run {run_id}: {type(event).__name__} of {task} before "
                                           f"{', '.join(missing)} succeeded", (run_id,)))
                if isinstance(event, m.LeaseGranted):
                    leases[task] = (event.epoch, True)
            case m.LeaseExpired(task=task, epoch=epoch) | m.LeaseReleased(task=task, epoch=epoch):
                if leases.get(task, (0, False))[0] == epoch:
                    leases[task] = (epoch, False)
            case m.AttemptFailed(task=task, epoch=epoch, counted=counted):
                if leases.get(task, (0, False))[0] == epoch:
                    leases[task] = (epoch, False)
                if counted:
                    failures[task] = failures.get(task, 0) + 1
                    if failures[task] > max(1, policy.max_retries):
                        found.append(Violation("retries within maxRetries", f"run {run_id}: {task} failed "
                                               f"{failures[task]} times (maxRetries {policy.max_retries})",
                                               (run_id,)))
            case m.RetryScheduled(task=task, backoff_ms=backoff, due_ms=due):
                n = max(1, failures.get(task, 0))
                base = base_backoff_ms(policy, n)
                low, high = base * (1 - policy.jitter_fraction) - 1, base * (1 + policy.jitter_fraction) + 1
                kind = _last_failure_kind(records, record, task)
                if (kind is not FailureKind.BREAKER_OPEN and not low <= backoff <= high) or due != record.at_ms + backoff:
                    found.append(Violation("backoff within its bounds", f"run {run_id}: {task} retry after "
                                           f"{backoff} ms, due {due} (failure {n}: {low:.0f}-{high:.0f} ms)",
                                           (run_id,)))
            case m.TaskReplayed(task=task):
                failures[task] = 0
            case m.TaskSucceeded(task=task, epoch=epoch):
                latest, live = leases.get(task, (0, False))
                if epoch != latest or not live:
                    found.append(Violation("a fenced worker's result is never applied",
                                           f"run {run_id}: {task} succeeded with epoch {epoch} (lease {latest}, "
                                           f"{'live' if live else 'ended'})", (run_id,)))
                succeeded.add(task)
                leases[task] = (epoch, False)
            case _:
                pass
    return found


def _last_failure_kind(records: list[Any], at: Any, task: str) -> FailureKind | None:
    kind = None
    for record in records:
        if record is at:
            break
        if isinstance(record.event, m.AttemptFailed) and record.event.task == task:
            kind = record.event.kind
    return kind


def _journal(plan: SystemPlan, result: SimulationResult) -> list[Violation]:
    """No tool call whose success was on the log when an attempt was granted is executed
    again by that attempt (the Assignment carries the journal as of the grant)."""
    if not plan.execution.idempotency_tracking:
        return []
    granted: dict[tuple[str, str, int], int] = {}
    recorded: dict[tuple[str, str], int] = {}
    for position, record in enumerate(result.events):
        event = record.event
        if isinstance(event, m.LeaseGranted):
            granted[(event.run_id, event.task, event.epoch)] = position
        elif isinstance(event, m.ToolCallSucceeded):
            recorded.setdefault((event.run_id, event.key), position)
    found = []
    for run in result.executions:
        grant = granted.get((run.run_id, run.task, run.epoch))
        first = recorded.get((run.run_id, run.key))
        if grant is not None and first is not None and first < grant:
            found.append(Violation("no journaled tool call executed again",
                                   f"run {run.run_id}: {run.tool} (key {run.key[:12]}) ran again in {run.task} "
                                   f"epoch {run.epoch}, after its success was journaled", (run.run_id,)))
    return found


def _approvals(plan: SystemPlan, result: SimulationResult) -> list[Violation]:
    """A tool that requires approval runs only after a person granted that call
    (ARCHITECTURE.md invariant 8)."""
    gated = {(agent.name, tool.name) for agent in plan.agents for tool in agent.tools if tool.approval_required}
    if not gated:
        return []
    granted: dict[tuple[str, str], int] = {}
    for record in result.events:
        if isinstance(record.event, m.ApprovalGranted):
            granted.setdefault((record.event.run_id, record.event.approval_id), record.at_ms)
    found = []
    for run in result.executions:
        if (run.task, run.tool) not in gated:
            continue
        when = granted.get((run.run_id, run.key))
        if when is None or when > run.at_ms:
            found.append(Violation("no approval-required tool runs without a grant",
                                   f"run {run.run_id}: {run.tool} (key {run.key[:12]}) ran in {run.task} epoch "
                                   f"{run.epoch} at {run.at_ms} ms without a grant before it", (run.run_id,)))
    return found


def _breakers(plan: SystemPlan, result: SimulationResult) -> list[Violation]:
    """closed -> open only at the threshold the manifest declares, open -> half-open only
    after the cooldown, half-open -> closed or open; nothing else."""
    found = []
    declared: dict[str, int] = {}  # the lowest threshold any agent declares for the tool
    for policy in (policy for agent in plan.agents for policy in agent.tools):
        declared[policy.name] = min(declared.get(policy.name, policy.failure_threshold), policy.failure_threshold)
    status: dict[str, str] = {}
    counted: dict[str, tuple[int, int]] = {}  # tool -> (consecutive failures, threshold)
    due: dict[str, int] = {}
    for record in result.breaker_events:
        event, tool = record.event, record.run_id
        current = status.get(tool, "closed")
        problem = None
        match event:
            case FailureCounted(consecutive_failures=count, failure_threshold=threshold):
                counted[tool] = (count, threshold)
            case FailuresReset():
                counted[tool] = (0, counted.get(tool, (0, 0))[1])
            case BreakerOpened(half_open_due_ms=when):
                count, threshold = counted.get(tool, (0, 1))
                threshold = max(threshold, declared.get(tool, 1))
                if current == "closed" and count < threshold:
                    problem = f"opened after {count} failures (threshold {threshold})"
                elif current == "open":
                    problem = "opened while open"
                status[tool], due[tool] = "open", when
            case BreakerHalfOpened():
                if current != "open" or record.at_ms < due.get(tool, 0):
                    problem = f"half-opened from {current} at {record.at_ms} (cooldown until {due.get(tool)})"
                status[tool] = "half_open"
            case BreakerClosed():
                if current != "half_open":
                    problem = f"closed from {current}"
                status[tool] = "closed"
                counted[tool] = (0, counted.get(tool, (0, 0))[1])
            case _:
                pass
        if problem:
            found.append(Violation("breaker transitions as specified", f"breaker {tool}: {problem}"))
    return found


def _permits(plan: SystemPlan, result: SimulationResult) -> list[Violation]:
    """A limited tool never has more permits held than its concurrency, nor more granted
    in one rate period than the governor's bucket allows (docs/scheduling.md)."""
    limits = {t.name: t for agent in plan.agents for t in agent.tools if t.limited}
    holders: dict[str, set[tuple[str, int]]] = {}
    granted: dict[str, list[int]] = {}
    found = []
    for record in result.breaker_events:
        event, tool = record.event, record.run_id
        policy = limits.get(tool)
        if policy is None:
            continue
        held = holders.setdefault(tool, set())
        if isinstance(event, PermitGranted):
            held.add((event.key, event.try_no))
            if event.token:
                granted.setdefault(tool, []).append(event.granted_ms)
            if policy.concurrency and len(held) > policy.concurrency:
                found.append(Violation("tool limits hold", f"{tool}: {len(held)} permits held at "
                                       f"{record.at_ms}, over its concurrency {policy.concurrency}"))
        elif isinstance(event, PermitReleased):
            held.discard((event.key, event.try_no))
    for tool, times in granted.items():
        policy = limits[tool]
        if not policy.rate_limit:
            continue
        bound = window_bound(policy.rate_limit)
        for index, start in enumerate(times):
            inside = sum(1 for t in times[index:] if t < start + policy.rate_period_ms)
            if inside > bound:
                found.append(Violation("tool limits hold", f"{tool}: {inside} permits from {start} within "
                                       f"{policy.rate_period_ms} ms, over {bound}"))
                break
    return found
