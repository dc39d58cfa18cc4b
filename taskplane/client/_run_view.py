"""What a client knows of one run: a fold of the run's events (from ``events``, in
log order), pure and independent of Kafka so it is tested without a broker. The task
and run statuses are the shared fold's (``contract/status.py``), so the client says
what the orchestrator and the read model say.

``RunView.apply(offset, event)`` ignores an offset it has already applied: the
history scan of a run and the shared follower may both deliver the same record.
``from_record`` starts a view from the run's ``RunRecord`` (the ``runs`` index)
instead of its history.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from taskplane.contract import messages as m
from taskplane.contract.governance import Usage, format_cost, usage_totals
from taskplane.contract.plan import ExecutionPolicy, SystemPlan
from taskplane.contract.records import replace
from taskplane.contract.scheduling import dispatched
from taskplane.contract.state import RunStatus as FoldedStatus
from taskplane.contract.state import TaskStatus
from taskplane.contract.status import Statuses, fold_status, statuses_of

RunStatus = Literal["pending", "running", "dead_lettered", "succeeded", "failed", "cancelled", "rejected"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "rejected"})


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A task that used up its retries; it blocks its downstream until replayed."""

    task: str
    error: str
    attempts: int


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A snapshot of one run. ``status`` is the run's status (running, succeeded,
    failed, cancelled), and three words only a client needs: ``pending`` until the
    orchestrator took the submit, ``rejected`` when it refused it, ``dead_lettered``
    while the run is running but waits for a replay of a dead letter."""

    run_id: str
    system: str | None
    status: RunStatus
    tasks: dict[str, str]  # task -> its status word (docs/orchestrator.md, "Status words")
    dead_letters: tuple[DeadLetter, ...] = ()
    reason: str | None = None
    submitted_ms: int | None = None
    finished_ms: int | None = None
    tenant: str = ""  # "": none (docs/scheduling.md)
    priority: int = 0  # 1..5, 0: none
    tokens: int = 0  # the run's usage so far (docs/governance.md)
    cost: str = "0"  # a decimal string: money is never a float here

    @property
    def done(self) -> bool:
        return self.status in TERMINAL


@dataclass(slots=True)
class RunView:
    run_id: str
    system: str | None = None
    final_tasks: tuple[str, ...] = ()
    submitted_ms: int | None = None
    finished_ms: int | None = None
    rejected: bool = False
    reason: str | None = None
    statuses: Statuses | None = None
    unresolved: list[Any] | None = None  # events folded before the plan's body was known
    outputs: dict[str, str] = field(default_factory=dict)
    dead_letters: dict[str, DeadLetter] = field(default_factory=dict)
    next_offset: int = 0
    applied: int = 0  # events folded so far (the ``events()`` cursor counts on it)
    plan_reference: SystemPlan | None = None  # RunSubmitted named its plan without the body
    outputs_known: bool = True  # False when made from a retired run's record
    seed: Statuses | None = None  # from a record: what the unresolved events fold on
    tenant: str = ""
    priority: int = 0
    tokens: int = 0  # usage folded from the outcome events (or the record's)
    cost_micros: int = 0
    scheduled: bool = False  # the plan has spec.scheduling: its runs go through the dispatcher

    def use_plan(self, plan: SystemPlan) -> None:
        """The body of a referenced plan: the run's tasks and which of them are final."""
        self.plan_reference = None
        self.scheduled = plan.scheduling is not None
        self.final_tasks = tuple(a.name for a in plan.agents if not plan.downstream(a.name))
        if self.unresolved is not None and self.seed is not None:  # from a record, then events
            tasks, statuses = self.seed.tasks, self.seed
            folded: Statuses | None = replace(statuses, plan=plan, tasks={
                a.name: tasks.get(a.name, TaskStatus.PENDING) for a in plan.agents})
            for event in self.unresolved:
                folded = fold_status(folded, event)
            self.statuses, self.seed, self.unresolved = folded, None, None
        elif self.unresolved is not None:  # refolded with the dependencies the unblock rule reads
            self.statuses = statuses_of(self.unresolved, plan)
            self.unresolved = None

    def apply(self, offset: int, event: Any) -> bool:
        """Fold one event of this run; False when ``offset`` was already applied."""
        if offset < self.next_offset:
            return False
        self.next_offset = offset + 1
        self._fold(event)
        self.applied += 1
        return True

    def stalled(self, timeout: float) -> str:
        """A wait's timeout message, with what the run waits for when nothing of it runs:
        a run with a tenant and no dispatcher waited silently forever."""
        message = f"run {self.run_id} still {self.status} after {timeout:g}s"
        if self.status == "pending":
            return message + " (no orchestrator took the submit: is `taskplane processor run orchestrator` running?)"
        if self.status == "running" and set(self.tasks.values()) <= {"pending", "ready"}:
            dispatcher = " and `taskplane processor run dispatcher`" if dispatched(self.tenant, self.priority,
                                                                                   self.scheduled) else ""
            return message + f" (no task is running: is a worker of {self.system}{dispatcher} running?)"
        return message

    @property
    def tasks(self) -> dict[str, str]:
        """Each task's status word, in plan order."""
        folded = self.statuses
        return {} if folded is None else {name: status.value for name, status in folded.tasks.items()}

    def _fold(self, event: Any) -> None:
        self.statuses = fold_status(self.statuses, event)
        if self.unresolved is not None:
            self.unresolved.append(event)
        match event:
            case m.RunSubmitted(plan=plan, submitted_ms=submitted_ms):
                self.system, self.submitted_ms = plan.name, submitted_ms
                self.tenant, self.priority = event.tenant, event.priority
                if plan.agents:
                    self.use_plan(plan)
                else:  # referenced (since plans are held once): the client resolves it
                    self.plan_reference = plan
                    self.unresolved = [event]
            case m.TaskSucceeded(task=task, output=output, usage=usage):
                self.outputs[task] = output
                self._used(usage)
            case m.AttemptFailed(usage=usage) if usage:
                self._used(usage)
            case m.TaskDeadLettered(task=task, error=error, attempts=attempts):
                self.dead_letters[task] = DeadLetter(task, error, attempts)
            case m.TaskReplayed(task=task):
                self.dead_letters.pop(task, None)
            case m.RunSucceeded(finished_ms=finished_ms):
                self.finished_ms = finished_ms
            case m.RunFailed(reason=reason, finished_ms=finished_ms) | m.RunCancelled(
                    reason=reason, finished_ms=finished_ms):
                self.reason, self.finished_ms = reason, finished_ms
            case m.ToolCallSucceeded(usage=usage) | m.ToolCallFailed(usage=usage) if usage:
                self._used(usage)
            case m.CommandRejected(command="SubmitRun", reason=reason):
                if self.system is None:  # a duplicate submit of a known run changes nothing
                    self.rejected, self.reason = True, reason
            case _:
                pass  # the statuses above; tool calls and other rejections change nothing more

    def _used(self, usage: tuple[Usage, ...]) -> None:
        tokens, cost = usage_totals(usage)
        self.tokens += tokens
        self.cost_micros += cost

    @property
    def known(self) -> bool:
        """The orchestrator answered the submit (accepted or rejected)."""
        return self.system is not None or self.rejected

    @property
    def status(self) -> RunStatus:
        if self.rejected:
            return "rejected"
        folded = self.statuses
        if folded is None:
            return "pending"
        if folded.run is not FoldedStatus.RUNNING:
            return cast(RunStatus, folded.run.value)
        return "dead_lettered" if self.dead_letters else "running"

    @property
    def settled(self) -> bool:
        """Nothing more happens without an operator: finished, or waiting on a replay."""
        return self.status in TERMINAL or self.status == "dead_lettered"

    def result(self) -> dict[str, Any]:
        """The outputs of the run's final tasks (tasks nothing depends on), decoded."""
        return {task: _decode(self.outputs.get(task)) for task in self.final_tasks}

    def info(self) -> RunInfo:
        return RunInfo(self.run_id, self.system, self.status, dict(self.tasks),
                       tuple(self.dead_letters.values()), self.reason, self.submitted_ms, self.finished_ms,
                       self.tenant, self.priority, self.tokens, format_cost(self.cost_micros))


def from_record(record: m.RunRecord, next_offset: int = 0) -> RunView:
    """The view a run's index record stands for; events at ``next_offset`` and later
    fold on top. A retired record holds no outputs (``RunView.outputs_known`` False)."""
    view = RunView(record.run_id, next_offset=next_offset)
    if record.status == "rejected":
        view.rejected, view.reason = True, record.reason
        return view
    view.system, view.reason = record.system, record.reason
    view.submitted_ms, view.finished_ms = record.submitted_ms, record.finished_ms
    view.tenant, view.priority = record.tenant, record.priority
    view.tokens, view.cost_micros = record.tokens, record.cost_micros
    reference = SystemPlan(record.system, record.plan_version, (), ExecutionPolicy())
    view.plan_reference = reference  # resolved by the client, as a RunSubmitted's
    view.statuses = view.seed = Statuses(reference, FoldedStatus(record.status),
                                         {task.task: TaskStatus(task.status) for task in record.tasks},
                                         {task.task: task.blocked_by for task in record.tasks if task.blocked_by})
    view.unresolved = []  # refolded on the seed once the plan is resolved
    for task in record.tasks:
        if task.output is not None:
            view.outputs[task.task] = task.output
        if task.status == TaskStatus.DEAD_LETTERED.value:
            view.dead_letters[task.task] = DeadLetter(task.task, task.error or "", task.attempts)
    view.outputs_known = not record.retired
    return view


def _decode(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:  # an agent may return plain text
        return text
