"""The orchestrator decider: one run's DAG readiness, leases with fencing epochs, the
tool-call journal, retries, dead letters and run completion.

Pure: time is the ``at_ms`` of the command (and ``Tick.now_ms``), jitter is a hash.
Semantics and their reasons: ``docs/orchestrator.md``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import assert_never

from taskplane.contract.approvals import signature_problem
from taskplane.contract.decider import DecisionError, Output
from taskplane.contract.errors import TaskplaneError
from taskplane.contract.messages import (
    AttemptFailed,
    CancelRun,
    ClaimTask,
    Command,
    CommandRejected,
    CompleteTask,
    DecideApproval,
    Event,
    FailTask,
    FailureKind,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    LeaseRenewed,
    RecordToolCall,
    ReleaseLease,
    RenewLease,
    ReplayTask,
    RequestApproval,
    RetryScheduled,
    RunCancelled,
    RunFailed,
    RunSubmitted,
    RunSucceeded,
    SubmitRun,
    TaskBlocked,
    TaskDeadLettered,
    TaskReady,
    TaskReplayed,
    TaskSucceeded,
    Tick,
    ToolCallFailed,
    ToolCallSucceeded,
)
from taskplane.contract.plan import SystemPlan
from taskplane.contract.plans import PlanBook, PlanConflict
from taskplane.contract.records import replace
from taskplane.contract.state import RunState, RunStatus, TaskState, TaskStatus
from taskplane.processors.orchestrator import approvals
from taskplane.processors.orchestrator.backoff import backoff_ms
from taskplane.processors.orchestrator.budget import budget_stop, governed
from taskplane.processors.orchestrator.dispatching import dispatched
from taskplane.processors.orchestrator.evolve import downstream, evolve
from taskplane.processors.orchestrator.outputs import outputs
from taskplane.processors.orchestrator.retention import Retention, retirement
from taskplane.processors.orchestrator.retention import retire_at as _retire_at

LEASE_EXPIRED = "lease expired"


class UnknownPlan(TaskplaneError):
    """A stored run references a plan version no source knows: restoring it would
    decide without its policy. The ``systems`` topic lost ``name@version``. Not
    retryable until an operator applies that version again."""


class OrchestratorDecider:
    """``Decider[RunState, Command, Event]``, keyed by run id.

    ``plans`` holds each plan once (events and snapshots reference it, ``plans.py``);
    ``retention`` says when finished runs shrink to a final record and go. The one
    recorded input is a ``SubmitRun``'s ``given``: free worker slots (``hints.py``), one
    per slot; root task ``i`` is granted to ``given[i]`` at once, the rest are offered.
    It is recorded as ``RunSubmitted.free_slots``. ``approval_key`` checks that a
    ``DecideApproval`` is a person's (``contract/approvals.py``); without it, none is.
    """

    __slots__ = ("_trail", "approval_key", "plans", "retention")

    def __init__(self, plans: PlanBook | None = None, retention: Retention | None = None,
                 approval_key: bytes | None = None) -> None:
        self.plans = plans if plans is not None else PlanBook()
        self.retention = retention or Retention()
        self.approval_key = approval_key
        # The folds the last decision made while deciding (state, event, state after),
        # in order: ``evolve`` of the same state and event returns the same state after.
        self._trail: list[tuple[RunState | None, Event, RunState]] = []

    def decide(self, state: RunState | None, command: Command, at_ms: int,
               given: tuple[str, ...] | None = None) -> Sequence[Event]:
        self._trail = []
        batch = self._decision(state, command, at_ms, given)
        if isinstance(batch, list):
            return batch
        self._trail = batch.trail
        return batch.events

    def recorded(self, command: Command, events: Sequence[Event]) -> tuple[str, ...] | None:
        """A submit's free slots, from its ``RunSubmitted``; nothing else takes inputs."""
        if type(command) is SubmitRun and events and type(first := events[0]) is RunSubmitted:
            return first.free_slots or None
        return None

    def _decision(self, state: RunState | None, command: Command, at_ms: int,
                  given: tuple[str, ...] | None) -> _Batch | list[Event]:
        if isinstance(command, SubmitRun):
            return _submit(state, command, at_ms, self.plans, given or ())
        if isinstance(command, Tick):
            # The clock is never rejected: a tick for no run is a no-op, for a finished
            # run it may retire it.
            if state is None:
                return []
            if state.status is not RunStatus.RUNNING:
                return retirement(state, command.now_ms, self.retention)
            return _tick(state, command.now_ms, at_ms)
        if state is None:
            raise DecisionError("unknown run")
        if state.status is not RunStatus.RUNNING:
            raise DecisionError(f"run already {state.status.value}")
        if isinstance(command, DecideApproval):  # only a person's signed decision is decided at all
            problem = signature_problem(self.approval_key, command.approval_id, command.granted, command.who,
                                        command.decided_ms, command.signature)
            if problem:
                raise DecisionError(problem)
        batch = _Batch(state)
        match command:
            case ClaimTask():
                _claim(batch, command, at_ms)
            case RenewLease():
                _renew(batch, command, at_ms)
            case ReleaseLease():
                task = _holder(state, command.task, command.worker_id, command.epoch)
                batch.add(LeaseReleased(state.run_id, task.name, task.epoch, command.worker_id))
                batch.add(TaskReady(state.run_id, task.name, task.attempt))
            case RecordToolCall():
                _record(batch, command)
                if governed(state):
                    _stop_over_budget(batch, at_ms)
            case CompleteTask():
                _complete(batch, command, at_ms)
            case FailTask():
                _fail(batch, command, at_ms)
            case ReplayTask():
                _replay(batch, command)
            case CancelRun():
                batch.add(RunCancelled(state.run_id, command.reason, at_ms))
            case RequestApproval():
                approvals.request(batch, command, at_ms, _holder)
            case DecideApproval():
                approvals.decide(batch, command, at_ms, _after_failure)
            case _:
                assert_never(command)
        return batch

    def evolve(self, state: RunState | None, event: Event) -> RunState | None:
        """``evolve.evolve``, and for the events just decided, the state deciding them
        already folded (evolve is pure: the same state and event, the same result; each
        fold was a third of the orchestrator's copies, docs/benchmarks.md)."""
        trail = self._trail
        if trail:
            before, decided, after = trail[0]
            if decided is event and before is state:
                del trail[0]
                return after
            self._trail = []
        if state is None and isinstance(event, RunSubmitted):
            plan = self.plans.resolve(event.plan)
            if plan is None and event.plan.agents == ():
                plan = event.plan  # a plan with no agents, or one no source knows
            if plan is not None and plan is not event.plan:
                event = RunSubmitted(event.run_id, plan, event.input, event.submitted_ms, event.idempotency_key,
                                     tenant=event.tenant, priority=event.priority)
        return evolve(state, event)

    def retire_at(self, state: RunState | None) -> int | None:
        return _retire_at(state, self.retention)

    def snapshot(self, state: RunState) -> RunState:
        """The stored form: the plan by reference, and no tool call's key stored twice
        (it is its map key). Tasks are stored as they are: dropping their names (a few
        bytes each) copied every task of every snapshot, 8 % of the orchestrator's time
        at saturation; ``restored`` takes both forms."""
        journal = state.journal
        if journal:
            journal = {key: replace(call, key="") for key, call in journal.items()}
        return replace(state, plan=self.plans.reference(state.plan), journal=journal)

    def restored(self, stored: RunState) -> RunState:
        plan = self.plans.resolve(stored.plan)
        if plan is None:
            if stored.tasks:
                raise UnknownPlan(f"run {stored.run_id}: system {stored.plan.name!r} version "
                                  f"{stored.plan.version!r} is not on the systems topic")
            plan = stored.plan  # a final record, or a run of a plan with no agents
        return replace(stored, plan=plan,
                       tasks={name: task if task.name else replace(task, name=name)
                              for name, task in stored.tasks.items()},
                       journal={key: call if call.key else replace(call, key=key)
                                for key, call in stored.journal.items()})

    def next_deadline(self, state: RunState | None) -> int | None:
        if state is None or state.status is not RunStatus.RUNNING:
            return None
        timers = [t.lease_expires_ms for t in state.tasks.values()
                  if t.status is TaskStatus.LEASED and t.lease_expires_ms is not None]
        timers += [t.retry_due_ms for t in state.tasks.values()
                   if t.status is TaskStatus.BACKOFF and t.retry_due_ms is not None]
        if state.approvals and (expiry := approvals.next_expiry(state)) is not None:
            timers.append(expiry)
        return min(timers, default=None)

    def tick(self, now_ms: int) -> Command:
        return Tick(now_ms)

    def outputs(self, state: RunState | None, event: Event) -> Iterable[Output]:
        return outputs(state, event)

    def rejection(self, command: Command, reason: str) -> Event:
        name = type(command).__name__
        match command:
            case Tick():
                return CommandRejected("", name, None, None, reason)
            case SubmitRun() | CancelRun():
                return CommandRejected(command.run_id, name, None, None, reason)
            case DecideApproval():  # the approval's id where a task would be: what the decider answers
                return CommandRejected(command.run_id, name, command.approval_id, None, reason)
            case ReplayTask():
                return CommandRejected(command.run_id, name, command.task, None, reason)
            case _:
                return CommandRejected(command.run_id, name, command.task, command.worker_id, reason)


@dataclass(slots=True)
class _Batch:
    """The events of one decision. ``state`` is the state they lead to so far (later
    rules in the same decision see earlier events), folded only when read."""

    base: RunState
    events: list[Event] = field(default_factory=list)
    folded: int = 0
    trail: list[tuple[RunState | None, Event, RunState]] = field(default_factory=list)  # each fold

    @property
    def state(self) -> RunState:
        for event in self.events[self.folded:]:
            after = evolve(self.base, event)
            assert after is not None
            self.trail.append((self.base, event, after))
            self.base = after
        self.folded = len(self.events)
        return self.base

    def add(self, event: Event) -> None:
        self.events.append(event)


# ---------------------------------------------------------------- submit


def _submit(state: RunState | None, command: SubmitRun, at_ms: int, plans: PlanBook,
            free_slots: tuple[str, ...]) -> _Batch:
    if state is not None:
        raise DecisionError("duplicate: run already submitted")
    problem = _plan_problem(command.plan)
    if problem:
        raise DecisionError(f"invalid plan: {problem}")
    try:
        plan = plans.add(command.plan)  # content-addressed: adding never changes a decision
    except PlanConflict as conflict:
        raise DecisionError(f"invalid plan: {conflict}") from None
    if dispatched(plan, command.tenant, command.priority):
        free_slots = ()  # no root grants: the dispatcher admits a dispatched run's roots (docs/scheduling.md)
    initial = evolve(None, RunSubmitted(command.run_id, plan, command.input, at_ms, command.idempotency_key,
                                        tenant=command.tenant, priority=command.priority))
    assert initial is not None
    submitted = RunSubmitted(command.run_id, plans.reference(plan), command.input, at_ms, command.idempotency_key,
                             free_slots, command.tenant, command.priority)
    batch = _Batch(initial, [submitted], folded=1, trail=[(None, submitted, initial)])
    roots = 0
    for agent in plan.agents:
        if agent.dependencies:
            continue
        worker = free_slots[roots] if roots < len(free_slots) else None
        roots += 1
        if worker is None:
            batch.add(TaskReady(command.run_id, agent.name, 1))
        else:  # a worker reported a free slot a moment ago: granted as a claim of it would be
            batch.add(TaskReady(command.run_id, agent.name, 1, offered=False))
            _claim(batch, ClaimTask(command.run_id, agent.name, 1, worker), at_ms)
    if not plan.agents:
        batch.add(RunSucceeded(command.run_id, at_ms))
    return batch


def _plan_problem(plan: SystemPlan) -> str | None:
    """The manifest compiler refuses bad plans; this guards the decider's own
    assumptions (a cycle or unknown dependency would leave a run stuck forever)."""
    names = {agent.name for agent in plan.agents}
    if len(names) != len(plan.agents):
        return "duplicate agent names"
    for agent in plan.agents:
        unknown = [dep for dep in agent.dependencies if dep not in names]
        if unknown:
            return f"agent {agent.name!r} depends on unknown {unknown[0]!r}"
    # Kahn's count: linear in agents and dependencies (a plan of thousands is checked at once)
    waiting = {agent.name: len(set(agent.dependencies)) for agent in plan.agents}
    dependents: dict[str, list[str]] = {name: [] for name in names}
    for agent in plan.agents:
        for dep in set(agent.dependencies):
            dependents[dep].append(agent.name)
    ready = [name for name, count in waiting.items() if count == 0]
    done: set[str] = set()
    while ready:
        name = ready.pop()
        done.add(name)
        for child in dependents[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    if len(done) < len(names):
        return "dependency cycle among " + ", ".join(sorted(names - done))
    return None


# ---------------------------------------------------------------- leases


def _task(state: RunState, name: str) -> TaskState:
    task = state.tasks.get(name)
    if task is None:
        raise DecisionError(f"unknown task {name!r}")
    return task


def _holder(state: RunState, name: str, worker_id: str, epoch: int) -> TaskState:
    """The task, if ``worker_id`` holds its current lease at ``epoch`` (fencing)."""
    task = _task(state, name)
    if task.status is not TaskStatus.LEASED:
        raise DecisionError(f"not leased (task is {task.status.value})")
    if epoch != task.epoch:
        raise DecisionError(f"stale epoch {epoch} (current {task.epoch})")
    if worker_id != task.holder:
        raise DecisionError("not the lease holder")
    return task


def _claim(batch: _Batch, command: ClaimTask, at_ms: int, started_ahead: bool = False) -> None:
    task = _task(batch.state, command.task)
    if task.status is TaskStatus.LEASED:
        raise DecisionError("already leased")
    if task.status is not TaskStatus.READY:
        raise DecisionError(f"not ready (task is {task.status.value})")
    if command.attempt != task.attempt:
        raise DecisionError(f"stale attempt {command.attempt} (current {task.attempt})")
    expires = at_ms + batch.state.plan.execution.lease_timeout_ms
    batch.add(LeaseGranted(batch.state.run_id, task.name, task.attempt, command.worker_id,
                           task.epoch + 1, expires, started_ahead))


def _renew(batch: _Batch, command: RenewLease, at_ms: int) -> None:
    task = _holder(batch.state, command.task, command.worker_id, command.epoch)
    if task.lease_expires_ms is not None and task.lease_expires_ms <= at_ms:
        raise DecisionError(LEASE_EXPIRED)
    expires = at_ms + batch.state.plan.execution.lease_timeout_ms
    batch.add(LeaseRenewed(batch.state.run_id, task.name, task.epoch, expires))


def _tick(state: RunState, now_ms: int, at_ms: int) -> _Batch:
    batch = _Batch(state)
    for name in [agent.name for agent in state.plan.agents]:
        if batch.state.status is not RunStatus.RUNNING:
            break
        task = batch.state.tasks[name]
        if (task.status is TaskStatus.LEASED and task.lease_expires_ms is not None
                and task.lease_expires_ms <= now_ms):
            batch.add(LeaseExpired(state.run_id, name, task.epoch, task.holder or ""))
            batch.add(AttemptFailed(state.run_id, name, task.attempt, task.epoch, LEASE_EXPIRED,
                                    FailureKind.ERROR, True))
            _after_failure(batch, name, FailureKind.ERROR, 0, at_ms)
        elif (task.status is TaskStatus.BACKOFF and task.retry_due_ms is not None
                and task.retry_due_ms <= now_ms):
            batch.add(TaskReady(state.run_id, name, task.attempt))
        elif task.status is TaskStatus.AWAITING_APPROVAL:
            approvals.expire_due(batch, name, now_ms, at_ms, _after_failure)
    return batch


# ---------------------------------------------------------------- journal


def _record(batch: _Batch, command: RecordToolCall) -> None:
    state = batch.state
    task = _task(state, command.task)
    # Any epoch this task ever granted: a stale holder's side effect is still a fact.
    if not 1 <= command.epoch <= task.epoch:
        raise DecisionError(f"unknown epoch {command.epoch} (latest {task.epoch})")
    if command.ok:
        known = state.journal.get(command.key)
        if state.plan.execution.idempotency_tracking and known is not None and known.ok:
            raise DecisionError("duplicate tool call")
        batch.add(ToolCallSucceeded(state.run_id, task.name, command.epoch, command.key, command.tool,
                                    command.call_index, command.result or "", command.usage))
    else:
        batch.add(ToolCallFailed(state.run_id, task.name, command.epoch, command.key, command.tool,
                                 command.call_index, command.error or "", command.usage))


def _stop_over_budget(batch: _Batch, at_ms: int) -> bool:
    """The budget rule (``budget.py``), after the usage was folded: whether it stopped the run."""
    stop = budget_stop(batch.state, at_ms)
    if stop is not None:
        batch.add(stop)
    return stop is not None


# ---------------------------------------------------------------- completion


def _complete(batch: _Batch, command: CompleteTask, at_ms: int) -> None:
    task = _holder(batch.state, command.task, command.worker_id, command.epoch)
    run_id = batch.state.run_id
    batch.add(TaskSucceeded(run_id, task.name, task.attempt, task.epoch, command.output, command.usage))
    after = batch.state
    if governed(after) and not all(t.status is TaskStatus.SUCCEEDED for t in after.tasks.values()) \
            and _stop_over_budget(batch, at_ms):
        return  # nothing more runs: the run is out of budget
    tasks, plan = after.tasks, after.plan
    follow_on = command.follow_on
    for child in plan.downstream(task.name):
        if tasks[child].status is TaskStatus.PENDING and all(
                tasks[dep].status is TaskStatus.SUCCEEDED for dep in plan.agent(child).dependencies):
            if follow_on > 0:  # the completer has a free slot: ready and granted in one decision
                follow_on -= 1
                batch.add(TaskReady(run_id, child, 1, offered=False))
                _claim(batch, ClaimTask(run_id, child, 1, command.worker_id), at_ms,
                       child in command.started_ahead)
            else:
                batch.add(TaskReady(run_id, child, 1))
    if all(t.status is TaskStatus.SUCCEEDED for t in tasks.values()):
        batch.add(RunSucceeded(run_id, at_ms))


# ---------------------------------------------------------------- failures


def _fail(batch: _Batch, command: FailTask, at_ms: int) -> None:
    task = _holder(batch.state, command.task, command.worker_id, command.epoch)
    counted = command.kind is not FailureKind.BREAKER_OPEN
    batch.add(AttemptFailed(batch.state.run_id, task.name, task.attempt, task.epoch, command.error,
                            command.kind, counted, command.usage))
    if governed(batch.state) and _stop_over_budget(batch, at_ms):
        return  # no retry and no dead letter: the run is out of budget
    _after_failure(batch, task.name, command.kind, command.retry_after_ms, at_ms)


def _after_failure(batch: approvals.Batch, name: str, kind: FailureKind, retry_after_ms: int, at_ms: int) -> None:
    """The retry rule, applied after AttemptFailed was folded (``failures`` counts it)."""
    state = batch.state
    task = state.tasks[name]
    policy = state.plan.execution
    if kind is FailureKind.BREAKER_OPEN:
        # Budget kept; wait at least as long as the current failures' backoff (and at
        # least the first backoff, so a fail-fast loop cannot spin on an open breaker).
        delay = max(retry_after_ms, backoff_ms(policy, state.run_id, name, max(1, task.failures)))
        batch.add(RetryScheduled(state.run_id, name, task.attempt + 1, at_ms + delay, delay))
        return
    if kind is FailureKind.ERROR and task.failures < max(1, policy.max_retries):
        delay = backoff_ms(policy, state.run_id, name, task.failures)
        batch.add(RetryScheduled(state.run_id, name, task.attempt + 1, at_ms + delay, delay))
        return
    error = task.last_error or ""
    if not policy.dead_letter_transition:
        batch.add(RunFailed(state.run_id, f"task {name} failed: {error}", at_ms))
        return
    batch.add(TaskDeadLettered(state.run_id, name, task.attempt, error, at_ms))
    for child in downstream(state.plan, name):  # dead-lettering changes no other task
        if state.tasks[child].status not in (TaskStatus.SUCCEEDED, TaskStatus.BLOCKED):
            batch.add(TaskBlocked(state.run_id, child, name))


def _replay(batch: _Batch, command: ReplayTask) -> None:
    run_id, task = batch.state.run_id, _task(batch.state, command.task)
    if task.status is not TaskStatus.DEAD_LETTERED:
        raise DecisionError(f"not dead-lettered (task is {task.status.value})")
    batch.add(TaskReplayed(run_id, task.name, task.attempt + 1, command.requested_by))
    batch.add(TaskReady(run_id, task.name, task.attempt + 1))
