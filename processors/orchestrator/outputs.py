"""Records derived from orchestrator events: work offers, claim replies, dead letters,
tool outcomes for the breaker processor, and the ``runs`` index (``run_index.py``)."""

from __future__ import annotations

from taskplane.contract.cron import ScheduledRunEnded, schedule_of
from taskplane.contract.decider import Output
from taskplane.contract.messages import (
    Assignment,
    CommandRejected,
    DeadLetterRecord,
    Event,
    JournalEntry,
    LeaseGranted,
    RunCancelled,
    RunFailed,
    RunSubmitted,
    RunSucceeded,
    TaskDeadLettered,
    TaskReady,
    TaskReplayed,
    ToolCallFailed,
    ToolCallSucceeded,
    ToolOutcome,
    WorkItem,
)
from taskplane.contract.state import RunState
from taskplane.processors.orchestrator.approvals import granted_not_run
from taskplane.processors.orchestrator.budget import stopped_answer, stopped_notice, usage_answer
from taskplane.processors.orchestrator.dispatching import dispatch_outputs, dispatched
from taskplane.processors.orchestrator.run_index import rejected_submit, run_record

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_MS = 60_000


def outputs(state: RunState | None, event: Event) -> list[Output]:
    """Derived records for ``event``, given the state after it."""
    if isinstance(event, CommandRejected):
        if event.command == "SubmitRun":  # the answer a duplicate's submitter reads
            answer = rejected_submit(event.run_id, event.reason) if state is None else run_record(state)
            return [Output("runs", event.run_id, answer)]
        if event.command == "RecordToolCall" and state is not None and state.plan.policy is not None:
            return stopped_answer(state, event)  # budget.py: a governed attempt waits for an answer
        if event.command != "ClaimTask" or event.worker_id is None:
            return []
        return [Output("inbox", event.worker_id, _refusal(state, event))]
    if state is None:
        return []
    if dispatched(state.plan, state.tenant, state.priority):  # docs/scheduling.md
        if type(event) is TaskReady:
            return dispatch_outputs(state, event)  # an offer to the dispatcher instead of a WorkItem
        found = _run_outputs(state, event)
        extra = dispatch_outputs(state, event)
        return found + extra if extra else found
    return _run_outputs(state, event)


def _run_outputs(state: RunState, event: Event) -> list[Output]:
    match event:
        case TaskReady(offered=False):
            return []  # granted in the same decision: the LeaseGranted's Assignment carries it
        case TaskReady(run_id=run_id, task=task, attempt=attempt):
            return [Output("work", f"{run_id}/{task}", WorkItem(run_id, state.plan.name, task, attempt))]
        case LeaseGranted(started_ahead=True):
            return []  # the holder runs it already: the Assignment would be ignored
        case LeaseGranted():
            return [Output("inbox", event.worker_id, _assignment(state, event))]
        case TaskDeadLettered():
            return [Output("deadletter", event.run_id, _dead_letter(state, event)),
                    Output("runs", event.run_id, run_record(state))]
        case RunSubmitted():
            return [Output("runs", event.run_id, run_record(state, with_tasks=False))]
        case RunFailed(holders=holders) if holders:  # budget_exceeded: the holders are told
            return [Output("runs", event.run_id, run_record(state)), *_schedule_notice(state),
                    *(Output("inbox", worker, stopped_notice(state, worker, event.reason)) for worker in holders)]
        case RunSucceeded() | RunFailed() | RunCancelled():
            return [Output("runs", event.run_id, run_record(state)), *_schedule_notice(state)]
        case TaskReplayed():
            return [Output("runs", event.run_id, run_record(state))]
        case ToolCallSucceeded() | ToolCallFailed():
            outcome = Output("tool-outcomes", event.tool, _tool_outcome(state, event))
            if state.plan.policy is None:
                return [outcome]
            reply = usage_answer(state, event)  # budget.py: a governed run's holder waits for it
            return [outcome] if reply is None else [outcome, reply]
        case _:
            return []


def _schedule_notice(state: RunState) -> list[Output]:
    """A run a schedule started tells the cron processor it ended (its concurrencyPolicy
    learns from the log whether the previous run still runs)."""
    schedule = schedule_of(state.idempotency_key)
    if schedule is None:
        return []
    system = state.plan.name
    return [Output("schedules", system, ScheduledRunEnded(system, schedule, state.run_id, state.status.value))]


def journal_entries(state: RunState) -> tuple[JournalEntry, ...]:
    """The run's succeeded tool calls, in a stable order. Keys embed the task, so a
    worker only ever looks up its own; the whole run's journal is handed over."""
    entries = [JournalEntry(r.key, r.tool, r.call_index, r.result or "")
               for r in state.journal.values() if r.ok]
    return tuple(sorted(entries, key=lambda e: (e.tool, e.call_index, e.key)))


def _assignment(state: RunState, event: LeaseGranted) -> Assignment:
    agent = state.plan.agent(event.task)
    policy = state.plan.execution
    inputs = {dep: state.tasks[dep].output or "" for dep in agent.dependencies}
    journal = journal_entries(state) if policy.idempotency_tracking else ()
    return Assignment(event.worker_id, event.run_id, event.task, event.attempt, True, None, event.epoch,
                      event.expires_ms, policy.lease_timeout_ms, state.plan.name, agent.model,
                      state.input, inputs, journal, agent.tools,
                      granted_not_run(state, event.task) if state.approvals else (), state.plan.policy,
                      state.tokens, state.cost_micros, state.plan.version)


def _refusal(state: RunState | None, event: CommandRejected) -> Assignment:
    system = state.plan.name if state is not None else ""
    return Assignment(event.worker_id or "", event.run_id, event.task or "", 0, False, event.reason, 0, 0,
                      0, system, None, "", {}, ())


def _dead_letter(state: RunState, event: TaskDeadLettered) -> DeadLetterRecord:
    task = state.tasks[event.task]
    return DeadLetterRecord(event.run_id, state.plan.name, event.task, event.error, task.history,
                            journal_entries(state), event.at_ms)


def _tool_outcome(state: RunState, event: ToolCallSucceeded | ToolCallFailed) -> ToolOutcome:
    threshold, cooldown = DEFAULT_FAILURE_THRESHOLD, DEFAULT_COOLDOWN_MS
    for tool in state.plan.agent(event.task).tools:
        if tool.name == event.tool:
            threshold, cooldown = tool.failure_threshold, tool.cooldown_ms
    ok = isinstance(event, ToolCallSucceeded)
    error = None if isinstance(event, ToolCallSucceeded) else event.error
    return ToolOutcome(event.tool, ok, threshold, cooldown, event.run_id, error, event.key)
