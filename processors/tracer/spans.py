"""``events`` folded into spans (OpenTelemetry GenAI semantic conventions).

Pure: ``TraceFold.apply(event, at_ms)`` returns the spans that event closes, each with
the ids ``contract/trace_ids.py`` derives from the log, and times taken from the log
(the event's ``at_ms``, the time its command was decided on). So the same log gives the
same spans, byte for byte, however often it is folded.

- ``invoke_workflow {system}``: the run, closed by RunSucceeded/Failed/Cancelled; its
  span events are dead letters, blocked tasks and replays.
- ``invoke_agent {task}``: one granted attempt, from its grant to its outcome (success,
  failure, lease expiry or release); its children are its tool calls.
- ``execute_tool {tool}``: one try of a tool call. The log records when a call ended,
  not when it began: the span starts at the attempt's previous recorded step.
- a journal hit (a call a retried attempt did not run again: the journal answered it)
  is written to no log; it is inferred, as a zero-length ``execute_tool`` span with
  ``taskplane.tool.journal_hit``: a call of an earlier attempt that succeeded, whose
  index is below one this attempt recorded, or any such call when the attempt succeeded.
- ``backoff {task}``: a retry's wait, from the failure to the due time.
- ``dead_letter {task}``: a zero-length error span where a task was dead-lettered.
- ``approval {tool}``: a call's wait for a person, from ``ApprovalRequested`` to its
  grant, denial or expiry (who decided, and why, as attributes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taskplane.contract.governance import Usage, format_cost, usage_totals
from taskplane.contract.messages import (
    ApprovalDenied,
    ApprovalExpired,
    ApprovalGranted,
    ApprovalRequested,
    AttemptFailed,
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
from taskplane.contract.trace_ids import (
    attempt_span_id,
    run_span_id,
    span_id,
    tool_span_id,
    trace_id,
)

Attributes = dict[str, str | int | bool]
ERROR_TEXT_LIMIT = 512  # a status description, not a copy of the error payload


@dataclass(frozen=True, slots=True)
class SpanEvent:
    name: str
    at_ms: int
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class SpanRecord:
    """One finished span. ``error`` is the status description of a failed span; ``ok``
    False with no error is the unset status (a released attempt, a wait)."""

    trace_id: int
    span_id: int
    parent_id: int | None
    name: str
    start_ms: int
    end_ms: int
    attributes: Attributes
    events: tuple[SpanEvent, ...] = ()
    ok: bool = True
    error: str | None = None


@dataclass(slots=True)
class _Attempt:
    attempt: int
    epoch: int
    worker: str
    start_ms: int
    queue_ms: int | None
    last_ms: int  # the attempt's previous recorded step: where its next tool span starts
    tries: dict[str, int] = field(default_factory=dict)  # key -> tool tries recorded
    recorded: set[int] = field(default_factory=set)  # call indices this attempt recorded
    hits: set[str] = field(default_factory=set)  # journal hits already reported
    renewals: int = 0
    expired: bool = False


@dataclass(slots=True)
class _Task:
    ready_ms: int | None = None
    current: _Attempt | None = None
    attempts: dict[int, int] = field(default_factory=dict)  # epoch -> attempt (stale records)
    journal: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # key -> tool, index, epoch
    dead_letters: int = 0


@dataclass(slots=True)
class _Run:
    trace: int
    workflow: str
    version: str
    submitted_ms: int
    models: dict[str, str]
    tasks: dict[str, _Task] = field(default_factory=dict)
    events: list[SpanEvent] = field(default_factory=list)
    approvals: dict[str, ApprovalRequested] = field(default_factory=dict)  # pending, by approval id
    usage: list[Usage] = field(default_factory=list)  # every report of the run, for its span


class TraceFold:
    """Open runs and attempts; ``apply`` each event of ``events`` in log order."""

    __slots__ = ("_runs",)

    def __init__(self) -> None:
        self._runs: dict[str, _Run] = {}

    def is_open(self, run_id: str) -> bool:
        return run_id in self._runs

    def forget(self, run_id: str) -> None:
        """Drop an open run (its partition went to another tracer)."""
        self._runs.pop(run_id, None)

    def __len__(self) -> int:
        return len(self._runs)

    def apply(self, event: Event, at_ms: int) -> list[SpanRecord]:
        if isinstance(event, RunSubmitted):
            plan = event.plan
            models = {agent.name: agent.model for agent in plan.agents if agent.model}
            self._runs[event.run_id] = _Run(trace_id(event.run_id), plan.name, plan.version,
                                            event.submitted_ms, models)
            return []
        run = self._runs.get(event.run_id)
        if run is None or isinstance(event, CommandRejected):
            return []  # before the tracer's first offset, or after the run closed
        match event:
            case TaskReady():
                _task(run, event.task).ready_ms = at_ms
            case LeaseGranted():
                task = _task(run, event.task)
                queued = None if task.ready_ms is None else at_ms - task.ready_ms
                task.current = _Attempt(event.attempt, event.epoch, event.worker_id, at_ms, queued, at_ms)
                task.attempts[event.epoch] = event.attempt
            case LeaseRenewed():
                current = _task(run, event.task).current
                if current is not None and current.epoch == event.epoch:
                    current.renewals += 1
            case ToolCallSucceeded() | ToolCallFailed():
                return self._tool_call(event.run_id, run, event, at_ms)
            case TaskSucceeded():
                run.usage += event.usage
                return self._attempt_closed(event.run_id, run, event.task, event.epoch, at_ms, "succeeded", None,
                                            event.usage)
            case AttemptFailed():
                run.usage += event.usage
                current = _task(run, event.task).current
                expired = current is not None and current.expired
                kind = "lease_expired" if expired else event.kind.value
                return self._attempt_closed(event.run_id, run, event.task, event.epoch, at_ms, "failed",
                                            (kind, event.error), event.usage)
            case LeaseExpired():
                current = _task(run, event.task).current
                if current is not None and current.epoch == event.epoch:
                    current.expired = True  # AttemptFailed follows in the same decision
            case LeaseReleased():
                return self._attempt_closed(event.run_id, run, event.task, event.epoch, at_ms, "released", None)
            case RetryScheduled():
                return [SpanRecord(run.trace, span_id(event.run_id, event.task, "backoff", event.attempt),
                                   run_span_id(event.run_id), f"backoff {event.task}", at_ms, event.due_ms,
                                   {"taskplane.task": event.task, "taskplane.attempt": event.attempt,
                                    "taskplane.backoff_ms": event.backoff_ms}, ok=False)]
            case TaskDeadLettered():
                task = _task(run, event.task)
                task.dead_letters += 1
                error = event.error[:ERROR_TEXT_LIMIT]
                run.events.append(SpanEvent("dead_letter", at_ms, {"taskplane.task": event.task}))
                return [SpanRecord(run.trace, span_id(event.run_id, event.task, "dead_letter", task.dead_letters),
                                   run_span_id(event.run_id), f"dead_letter {event.task}", at_ms, at_ms,
                                   {"taskplane.task": event.task, "taskplane.attempts": event.attempts,
                                    "error.type": "dead_letter"}, ok=False, error=error)]
            case TaskBlocked():
                run.events.append(SpanEvent("blocked", at_ms, {"taskplane.task": event.task,
                                                               "taskplane.blocked_by": event.blocked_by}))
            case TaskReplayed():
                run.events.append(SpanEvent("replay", at_ms, {"taskplane.task": event.task,
                                                              "taskplane.requested_by": event.requested_by}))
            case ApprovalRequested():
                run.approvals[event.approval_id] = event
            case ApprovalGranted() | ApprovalDenied() | ApprovalExpired():
                requested = run.approvals.pop(event.approval_id, None)
                if requested is not None:
                    return [_approval_span(event.run_id, run, requested, event, at_ms)]
            case RunSucceeded() | RunFailed() | RunCancelled():
                del self._runs[event.run_id]
                return [_run_span(event.run_id, run, event, at_ms)]
            case RunRetired() | RunForgotten():
                self._runs.pop(event.run_id, None)
        return []

    def _tool_call(self, run_id: str, run: _Run, event: ToolCallSucceeded | ToolCallFailed,
                   at_ms: int) -> list[SpanRecord]:
        task = _task(run, event.task)
        attempt_no = task.attempts.get(event.epoch)
        if attempt_no is None:
            return []
        current = task.current if task.current is not None and task.current.epoch == event.epoch else None
        spans = [] if current is None else self._journal_hits(run_id, run, event.task, task, current,
                                                              below=event.call_index)
        tries = 1
        start_ms = at_ms
        if current is not None:
            tries = current.tries.get(event.key, 0) + 1
            current.tries[event.key] = tries
            current.recorded.add(event.call_index)
            start_ms = current.last_ms
            current.last_ms = at_ms
        attributes: Attributes = {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": event.tool,
            "gen_ai.tool.call.id": event.key, "taskplane.tool.call_index": event.call_index,
            "taskplane.tool.try": tries, "taskplane.tool.journal_hit": False,
        }
        attributes.update(usage_attributes(event.usage))
        run.usage += event.usage
        error = None
        if isinstance(event, ToolCallSucceeded):
            task.journal.setdefault(event.key, (event.tool, event.call_index, event.epoch))
        else:
            attributes["error.type"] = "tool_error"
            error = event.error[:ERROR_TEXT_LIMIT]
        spans.append(SpanRecord(run.trace, tool_span_id(run_id, event.task, event.epoch, event.key, tries),
                                attempt_span_id(run_id, event.task, attempt_no, event.epoch),
                                f"execute_tool {event.tool}", start_ms, at_ms, attributes,
                                ok=error is None, error=error))
        return spans

    def _journal_hits(self, run_id: str, run: _Run, name: str, task: _Task, current: _Attempt,
                      below: int | None) -> list[SpanRecord]:
        """Zero-length spans for the journaled calls of earlier attempts this attempt
        must have been answered (see the module's docstring)."""
        spans: list[SpanRecord] = []
        for key, (tool, index, epoch) in task.journal.items():
            if (epoch == current.epoch or key in current.hits or index in current.recorded
                    or (below is not None and index >= below)):
                continue
            current.hits.add(key)
            spans.append(SpanRecord(
                run.trace, span_id(run_id, name, current.epoch, key, "journal"),
                attempt_span_id(run_id, name, current.attempt, current.epoch), f"execute_tool {tool}",
                current.last_ms, current.last_ms,
                {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool, "gen_ai.tool.call.id": key,
                 "taskplane.tool.call_index": index, "taskplane.tool.journal_hit": True}))
        spans.sort(key=lambda span: int(span.attributes["taskplane.tool.call_index"]))
        return spans

    def _attempt_closed(self, run_id: str, run: _Run, name: str, epoch: int, at_ms: int, status: str,
                        failure: tuple[str, str] | None, usage: tuple[Usage, ...] = ()) -> list[SpanRecord]:
        task = _task(run, name)
        current = task.current
        if current is None or current.epoch != epoch:
            return []
        spans: list[SpanRecord] = []
        if status == "succeeded":
            spans = self._journal_hits(run_id, run, name, task, current, below=None)
        elif current.recorded:
            spans = self._journal_hits(run_id, run, name, task, current, below=max(current.recorded))
        task.current = None
        task.ready_ms = None
        attributes: Attributes = {
            "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name,
            "taskplane.run_id": run_id, "taskplane.attempt": current.attempt, "taskplane.lease.epoch": epoch,
            "taskplane.worker_id": current.worker, "taskplane.attempt.status": status,
            "taskplane.lease.renewals": current.renewals,
        }
        model = run.models.get(name)
        if model:
            attributes["gen_ai.request.model"] = model
        if current.queue_ms is not None:
            attributes["taskplane.queue_ms"] = current.queue_ms
        attributes.update(usage_attributes(usage))
        events: tuple[SpanEvent, ...] = ()
        error = None
        if failure is not None:
            attributes["error.type"] = failure[0]
            error = failure[1][:ERROR_TEXT_LIMIT]
            if failure[0] == "lease_expired":
                events = (SpanEvent("lease_expired", at_ms, {"taskplane.worker_id": current.worker}),)
        spans.append(SpanRecord(run.trace, attempt_span_id(run_id, name, current.attempt, epoch),
                                run_span_id(run_id), f"invoke_agent {name}", current.start_ms, at_ms,
                                attributes, events, ok=status != "released" and error is None, error=error))
        return spans


def _task(run: _Run, name: str) -> _Task:
    task = run.tasks.get(name)
    if task is None:
        task = run.tasks[name] = _Task()
    return task


def _run_span(run_id: str, run: _Run, event: RunSucceeded | RunFailed | RunCancelled, at_ms: int) -> SpanRecord:
    status = {RunSucceeded: "succeeded", RunFailed: "failed", RunCancelled: "cancelled"}[type(event)]
    attributes: Attributes = {
        "gen_ai.operation.name": "invoke_workflow", "gen_ai.workflow.name": run.workflow,
        "taskplane.run_id": run_id, "taskplane.system.version": run.version, "taskplane.run.status": status,
    }
    attributes.update(usage_attributes(tuple(run.usage)))
    error = None
    if not isinstance(event, RunSucceeded):
        attributes["error.type"] = status
        error = event.reason[:ERROR_TEXT_LIMIT]
    return SpanRecord(run.trace, run_span_id(run_id), None, f"invoke_workflow {run.workflow}",
                      run.submitted_ms, max(event.finished_ms, run.submitted_ms), attributes,
                      tuple(run.events), ok=error is None, error=error)


def _approval_span(run_id: str, run: _Run, requested: ApprovalRequested,
                   decided: ApprovalGranted | ApprovalDenied | ApprovalExpired, at_ms: int) -> SpanRecord:
    verdict = {ApprovalGranted: "granted", ApprovalDenied: "denied", ApprovalExpired: "expired"}[type(decided)]
    attributes: Attributes = {
        "taskplane.task": requested.task, "gen_ai.tool.name": requested.tool,
        "gen_ai.tool.call.id": requested.approval_id, "taskplane.approval.verdict": verdict,
        "taskplane.approval.ttl_ms": requested.ttl_ms,
    }
    error = None
    if isinstance(decided, ApprovalExpired):
        attributes["error.type"] = "approval_timeout"
        error = "approval_timeout"
    else:
        attributes["taskplane.approval.who"] = decided.who
        if decided.reason:
            attributes["taskplane.approval.reason"] = decided.reason[:ERROR_TEXT_LIMIT]
        if isinstance(decided, ApprovalDenied):
            attributes["error.type"] = "approval_denied"
            error = decided.reason[:ERROR_TEXT_LIMIT] or "approval_denied"
    return SpanRecord(run.trace, span_id(run_id, requested.task, "approval", requested.approval_id),
                      run_span_id(run_id), f"approval {requested.tool}", requested.requested_ms,
                      max(at_ms, requested.requested_ms), attributes, ok=error is None, error=error)


def usage_attributes(usage: tuple[Usage, ...]) -> Attributes:
    """What a call or an attempt reported (``ctx.report_usage``, docs/governance.md):
    ``taskplane.usage.tokens`` and ``taskplane.usage.cost`` (a decimal string), and
    ``gen_ai.response.model`` when one model was named. A report is a total, with no
    input/output split, so ``gen_ai.usage.input_tokens``/``output_tokens`` are not set."""
    if not usage:
        return {}
    tokens, cost = usage_totals(usage)
    attributes: Attributes = {"taskplane.usage.tokens": tokens, "taskplane.usage.cost": format_cost(cost)}
    models = {report.model for report in usage if report.model}
    if len(models) == 1:
        attributes["gen_ai.response.model"] = models.pop()
    return attributes
