"""Governance rules of the orchestrator: usage folded per run and task, and the stop of
a run whose usage reached its budget (docs/governance.md).

Pure, like the rest of the decider: usage arrives on the outcome commands
(``RecordToolCall``, ``CompleteTask``, ``FailTask``) and is recorded on their events;
the budget is the plan's ``PolicyPlan``, pinned by the run. A plan without a policy
pays nothing here: every hook is behind ``plan.policy is not None``.
"""

from __future__ import annotations

from collections.abc import Sequence

from taskplane.contract.decider import Output
from taskplane.contract.governance import (
    BUDGET_EXCEEDED,
    STOPPED_NOTICE,
    USAGE_NOTICE,
    Usage,
    budgeted,
    exhausted,
    usage_totals,
)
from taskplane.contract.messages import (
    Assignment,
    CommandRejected,
    RunFailed,
    ToolCallFailed,
    ToolCallSucceeded,
)
from taskplane.contract.records import replace
from taskplane.contract.state import RunState, RunStatus, TaskStatus


def fold_usage(state: RunState, task: str, usage: Sequence[Usage]) -> RunState:
    """``state`` with ``usage`` added to the run's and the task's totals."""
    tokens, cost = usage_totals(usage)
    if tokens == 0 and cost == 0:
        return state
    tasks = state.tasks
    known = tasks.get(task)
    if known is not None:
        tasks = {**tasks, task: replace(known, tokens=known.tokens + tokens,
                                        cost_micros=known.cost_micros + cost)}
    return replace(state, tokens=state.tokens + tokens, cost_micros=state.cost_micros + cost, tasks=tasks)


def budget_stop(state: RunState, at_ms: int) -> RunFailed | None:
    """The ``RunFailed`` that stops a running run whose usage reached its budget, naming
    the workers holding a lease (they are told, ``outputs.py``); None while within it."""
    if state.status is not RunStatus.RUNNING or not exhausted(state.plan.policy, state.tokens, state.cost_micros):
        return None
    holders = tuple(sorted({t.holder for t in state.tasks.values()
                            if t.status is TaskStatus.LEASED and t.holder is not None}))
    return RunFailed(state.run_id, BUDGET_EXCEEDED, at_ms, state.tokens, state.cost_micros, holders)


def governed(state: RunState) -> bool:
    """Whether the run's plan has a policy (the hooks' fast guard)."""
    return state.plan.policy is not None


def usage_answer(state: RunState, event: ToolCallSucceeded | ToolCallFailed) -> Output | None:
    """For a run with a budget, the answer to a tool call's record on its holder's inbox:
    the run's usage after it. The holder waits for it before its next call, so what the
    run's other attempts used stops it too (docs/governance.md, "Overshoot")."""
    if not budgeted(state.plan.policy):
        return None
    task = state.tasks.get(event.task)
    if task is None or task.holder is None or task.epoch != event.epoch:
        return None  # a stale holder's record: nobody waits for it
    return Output("inbox", task.holder, Assignment(
        task.holder, state.run_id, event.task, task.attempt, False, USAGE_NOTICE, event.epoch, 0, 0,
        state.plan.name, None, "", {}, (), run_tokens=state.tokens, run_cost_micros=state.cost_micros))


def stopped_notice(state: RunState, worker_id: str, reason: str) -> Assignment:
    """The notice that the run stopped: a refusal no claim waits for (``STOPPED_NOTICE``)."""
    return Assignment(worker_id, state.run_id, "", 0, False, STOPPED_NOTICE + reason, 0, 0, 0, state.plan.name,
                      None, "", {}, ())


def stopped_answer(state: RunState, event: CommandRejected) -> list[Output]:
    """The answer to a governed run's refused record (its sender waits for one): the run
    stopped (ended for any reason, cancelled), or, still running (a duplicate record),
    the run's usage as for an accepted one."""
    worker = event.worker_id
    if worker is None:
        return []
    if state.status is not RunStatus.RUNNING:
        return [Output("inbox", worker, stopped_notice(state, worker, state.reason or state.status.value))]
    task = state.tasks.get(event.task or "")
    if not budgeted(state.plan.policy) or task is None or task.holder != worker:
        return []
    return [Output("inbox", worker, Assignment(
        worker, state.run_id, task.name, task.attempt, False, USAGE_NOTICE, task.epoch, 0, 0, state.plan.name,
        None, "", {}, (), run_tokens=state.tokens, run_cost_micros=state.cost_micros))]
