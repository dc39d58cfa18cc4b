"""The simulated log in virtual time: one heap of timed actions, the orchestrator and the
breaker deciders applied with the runtime's own ``step`` (as ``InMemoryRunner`` and the
Kafka runtime apply them), their timers ticked on the runtime's cadence, and what they
output routed to simulated workers (``workers.py``).

What is modelled, and how close: commands reach the log a hop after they are sent and
carry the sender's clock as their log time (Kafka's CreateTime); derived records reach
workers a hop after the decision; a processor ticks due timers every ``tick_interval_ms``
of its own (virtual) clock. A broker outage holds every delivery until it ends and the
processors' ticks for a grace after it (as ``streams/runtime.py`` does); an aborted
transaction drops the decision and decides the command again after a recovery pause.
One partition per processor: a run's events are in the same order as on one of many.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from typing import Any

from taskplane.contract.approvals import sign
from taskplane.contract.breaker import BreakerState
from taskplane.contract.cron import ApplySchedules, CronTick, PauseSchedule, ScheduleSpec, SlotFired
from taskplane.contract.decider import Decider, Output, step
from taskplane.contract.messages import (
    ApprovalRequested,
    Assignment,
    DecideApproval,
    RunSubmitted,
    SubmitRun,
    Tick,
    ToolOutcome,
    WorkItem,
)
from taskplane.contract.plan import SystemPlan
from taskplane.contract.state import RunState, RunStatus, TaskStatus
from taskplane.processors.breaker.decider import BreakerDecider
from taskplane.processors.cron.app import CronHints
from taskplane.processors.cron.decider import CronDecider
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.hints import OrchestratorHints
from taskplane.processors.orchestrator.spare import DEFAULT_WINDOW_MS, SpareSlots
from taskplane.testing.simulation.faults import Faults, unit
from taskplane.testing.simulation.result import SimEvent, SimRun, ToolExecution

HOP_MS = 2  # one trip through the broker
TICK_INTERVAL_MS = 200  # RuntimeSettings.tick_interval_ms
TICK_GRACE_MS = 3_000  # RuntimeSettings.tick_grace_after_failure_ms
SUBMIT_SPACING_MS = 10
HORIZON_MS = 24 * 3_600_000  # a run not ended a virtual day later never will
# A system's cron schedules fire until this many slots (or as many as the runs asked
# for) fired, then are paused: a schedule never ends by itself.
CRON_SLOTS = 20
# A simulated person grants each approval this long after it was asked, signed with the
# simulation's own key (the orchestrator checks it as in production).
PERSON_MS = 500
PERSON_KEY = b"taskplane simulate: a simulated person"


class Loop:
    """Virtual time: actions run in time order (ties in the order they were scheduled)."""

    __slots__ = ("_heap", "_seq", "now")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.now = 0

    def at(self, time_ms: int, action: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(time_ms, self.now), self._seq, action, args))

    def run(self, horizon_ms: int) -> None:
        """Until nothing is left to happen (every run ended, every timer spent) or the
        horizon passed."""
        heap = self._heap
        pop = heapq.heappop
        while heap:
            time_ms, _, action, args = pop(heap)
            if time_ms > horizon_ms:
                break
            self.now = time_ms
            action(*args)


class Broker:
    """Delivery through the broker: a hop, held to the end of an outage."""

    __slots__ = ("loop", "outages")

    def __init__(self, loop: Loop, outages: list[tuple[int, int]]) -> None:
        self.loop = loop
        self.outages = outages

    def away_until(self, time_ms: int) -> int | None:
        for start, end in self.outages:
            if start <= time_ms < end:
                return end
        return None

    def deliver(self, sent_ms: int, action: Callable[..., None], *args: Any, hop_ms: int = HOP_MS) -> None:
        arrival = sent_ms + hop_ms
        end = self.away_until(arrival)
        self.loop.at(arrival if end is None else end + hop_ms, action, *args)


class Processor:
    """A stateful processor on the simulated log: commands decided one at a time (one per
    transaction), timers ticked on the runtime's cadence. ``route`` takes its outputs."""

    def __init__(self, name: str, decider: Decider[Any, Any, Any], broker: Broker,
                 route: Callable[[Output, int], None], record: Callable[[int, str, Any], None],
                 abort: Callable[[str, Any], bool] | None = None, hints: Any = None) -> None:
        self.name = name
        self.decider = decider
        self.hints = hints  # the recorded inputs' live source (contract.decider.Hints), if any
        self.broker = broker
        self.loop = broker.loop
        self.route = route
        self.record = record
        self.abort = abort  # whether this command's transaction aborts (a fault)
        self.states: dict[str, Any] = {}
        self.timers: list[tuple[int, str]] = []
        self.check_at: int | None = None
        self.paused_until = 0  # recovering from an aborted transaction
        self.queue: list[tuple[str, Any, int]] = []  # arrived while recovering
        self.decided = 0

    def command(self, key: str, command: Any, at_ms: int) -> None:
        if self.loop.now < self.paused_until:
            self.queue.append((key, command, at_ms))
            return
        if self.abort is not None and self.abort(key, command):
            # The transaction aborts: nothing of it is kept; the input is read again
            # once the processor recovered (and ticks wait for the queued renewals).
            self.paused_until = self.loop.now + 1_000
            self.queue.append((key, command, at_ms))
            self.loop.at(self.paused_until, self._resume)
            return
        self._apply(key, command, at_ms)

    def _resume(self) -> None:
        queued, self.queue = self.queue, []
        for key, command, at_ms in queued:
            self.command(key, command, at_ms)

    def _apply(self, key: str, command: Any, at_ms: int) -> None:
        self.decided += 1
        decider = self.decider
        hints = self.hints
        state, events, outputs, _failure = step(decider, self.states.get(key), command, at_ms, hints)
        if hints is not None:  # one command, one transaction: what the hints learnt is kept
            hints.commit()
        self.states[key] = state
        for event in events:
            self.record(at_ms, key, event)
        for output in outputs:
            self.route(output, at_ms)
        deadline = decider.next_deadline(state)
        if deadline is not None:
            heapq.heappush(self.timers, (deadline, key))
            self._check_by(deadline)

    def _check_by(self, deadline: int) -> None:
        at = -(-deadline // TICK_INTERVAL_MS) * TICK_INTERVAL_MS
        if self.check_at is None or at < self.check_at:
            self.check_at = at
            self.loop.at(at, self._check, at)

    def _check(self, at: int) -> None:
        if at != self.check_at:
            return  # superseded by an earlier check
        self.check_at = None
        now = self.loop.now
        held = max(self.paused_until + TICK_GRACE_MS if self.paused_until else 0, self._after_outage(now))
        if held > now:
            if self.timers:
                self._check_by(held)
            return
        if self.timers and self.timers[0][0] <= now:
            self.broker.deliver(now, self._tick, now)
        elif self.timers:
            self._check_by(self.timers[0][0])

    def _after_outage(self, now: int) -> int:
        for start, end in self.broker.outages:
            if start <= now < end + TICK_GRACE_MS:
                return end + TICK_GRACE_MS
        return 0

    def _tick(self, now_ms: int) -> None:
        due: list[str] = []
        timers = self.timers
        while timers and timers[0][0] <= now_ms:
            _, key = heapq.heappop(timers)
            if key not in due:
                due.append(key)
        decider = self.decider
        tick = decider.tick(now_ms)
        for key in sorted(due):
            deadline = decider.next_deadline(self.states.get(key))
            if deadline is None:
                continue
            if deadline > now_ms:
                heapq.heappush(timers, (deadline, key))
                continue
            self.command(key, tick, now_ms)
        if timers:
            self._check_by(timers[0][0])


class World:
    """One seed's log, processors and bookkeeping; ``workers.py`` adds the workers."""

    def __init__(self, plan: SystemPlan, faults: Faults, outages: list[tuple[int, int]]) -> None:
        self.plan = plan
        self.faults = faults
        self.loop = Loop()
        self.broker = Broker(self.loop, outages)
        self.events: list[SimEvent] = []
        self.breaker_events: list[SimEvent] = []
        self.permit_answers: dict[tuple[str, int, str, int], Any] = {}  # the governor's, to waiting attempts
        self.executions: list[ToolExecution] = []
        self.crashes: dict[str, int] = {}
        self.breakers: dict[str, BreakerState] = {}
        self.run_index: dict[str, int] = {}
        self.inputs: dict[str, Any] = {}
        self.occurrences: dict[tuple[str, str, str], int] = {}
        self.open_runs = 0
        decider = OrchestratorDecider(approval_key=PERSON_KEY)
        self.orchestrator = Processor("orchestrator", decider, self.broker, self._route, self._record,
                                      self._aborts, _hints(decider, faults))
        self.breaker = Processor("breaker", BreakerDecider(), self.broker, self._route_breaker,
                                 self._record_breaker)
        # Runs with a tenant and a priority go through the dispatcher (docs/scheduling.md),
        # on half the seeds; a plan with spec.scheduling does on every seed.
        self.dispatcher = Processor("dispatcher", DispatchDecider(), self.broker, self._route_dispatcher,
                                    self._record_dispatcher)
        self.dispatch_events: list[SimEvent] = []
        # The manifest's cron schedules (docs/scheduling.md): the real cron decider and
        # its calendar hints, in virtual time; a fired slot's SubmitRun is a run like any.
        self.cron = Processor("cron", CronDecider(), self.broker, self._route_cron, self._record_cron,
                              self._cron_aborts, CronHints())
        self.cron_events: list[SimEvent] = []
        self._cron_slots = 0
        self._schedules: tuple[ScheduleSpec, ...] = ()
        self.tenants = unit(faults.seed, "scheduling:tenants") < 0.5
        self.offer: Callable[[WorkItem, int], None] = lambda item, at: None
        self.assign: Callable[[Assignment], None] = lambda assignment: None

    # ------------------------------------------------------------ runs

    def submit(self, index: int, run_id: str, payload: Any, at_ms: int) -> None:
        self.run_index[run_id] = index
        self.inputs[run_id] = payload
        self.open_runs += 1
        tenant, priority = (f"t{index % 3}", 1 + index % 5) if self.tenants else ("", 0)
        command = SubmitRun(run_id, self.plan, json.dumps(payload, sort_keys=True, separators=(",", ":")), None,
                            tenant, priority)
        self.broker.deliver(at_ms, self.orchestrator.command, run_id, command, at_ms)

    def schedule(self, schedules: tuple[ScheduleSpec, ...], slots: int) -> None:
        """Apply ``schedules`` at virtual time 0, as ``taskplane apply`` does; pause them
        once ``slots`` slots fired."""
        if not schedules:
            return
        self._schedules, self._cron_slots = schedules, slots
        command = ApplySchedules(self.plan.name, self.plan.version, self.plan, schedules)
        self.broker.deliver(0, self.cron.command, self.plan.name, command, 0)

    def coordinate(self, run_id: str, what: str, task: str | None) -> str:
        """``run/what/task#n``: the n-th such thing of the run (stable whatever other runs do)."""
        counter = (run_id, what, task or "")
        n = self.occurrences.get(counter, 0)
        self.occurrences[counter] = n + 1
        return f"{self.run_index.get(run_id, -1)}/{what}/{task or '-'}#{n}"

    def _aborts(self, key: str, command: Any) -> bool:
        if isinstance(command, Tick) or "abort" not in self.faults.rates:
            return False
        coordinate = self.coordinate(key, type(command).__name__, getattr(command, "task", None))
        return self.faults.fires("abort", coordinate, self.loop.now)

    def _approve_later(self, at_ms: int, asked: ApprovalRequested) -> None:
        decided = at_ms + PERSON_MS
        decision = DecideApproval(asked.run_id, asked.approval_id, True, "simulated-person", decided, "",
                                  sign(PERSON_KEY, asked.approval_id, True, "simulated-person", decided))
        self.broker.deliver(decided, self.orchestrator.command, asked.run_id, decision, decided)

    # ------------------------------------------------------------ outputs

    def _record(self, at_ms: int, key: str, event: Any) -> None:
        self.events.append(SimEvent(at_ms, key, event))
        if isinstance(event, RunSubmitted):
            return
        if isinstance(event, ApprovalRequested):
            self._approve_later(at_ms, event)
            return
        kind = type(event).__name__
        if kind in ("RunSucceeded", "RunFailed", "RunCancelled"):
            self.open_runs -= 1

    def _record_breaker(self, at_ms: int, key: str, event: Any) -> None:
        self.breaker_events.append(SimEvent(at_ms, key, event))

    def _route(self, output: Output, at_ms: int) -> None:
        value = output.value
        if output.topic == "work":
            self.broker.deliver(at_ms, self.offer, value, at_ms)
        elif output.topic == "inbox":
            self.broker.deliver(at_ms, self.assign, value)
        elif output.topic == "tool-outcomes":
            assert isinstance(value, ToolOutcome)
            self.broker.deliver(at_ms, self.breaker.command, value.tool, value, at_ms)
        elif output.topic == "dispatch":
            self.broker.deliver(at_ms, self.dispatcher.command, output.key, value, at_ms)
        elif output.topic == "schedules":  # a scheduled run ended (the cron's concurrencyPolicy)
            self.broker.deliver(at_ms, self.cron.command, output.key, value, at_ms)
        # deadletter and systems: read from the events and the states

    def _cron_aborts(self, key: str, command: Any) -> bool:
        if isinstance(command, CronTick) or "abort" not in self.faults.rates:
            return False
        return self.faults.fires("abort", self.coordinate(key, f"cron:{type(command).__name__}", None),
                                 self.loop.now)

    def _record_cron(self, at_ms: int, key: str, event: Any) -> None:
        self.cron_events.append(SimEvent(at_ms, key, event))
        if isinstance(event, SlotFired):
            self._cron_slots -= 1
            if self._cron_slots == 0:
                for spec in self._schedules:
                    self.broker.deliver(at_ms, self.cron.command, key, PauseSchedule(key, spec.name, "simulate"),
                                        at_ms)

    def _route_cron(self, output: Output, at_ms: int) -> None:
        if output.topic != "commands":
            return
        submit = output.value
        if isinstance(submit, SubmitRun) and submit.run_id not in self.run_index:
            self.run_index[submit.run_id] = len(self.run_index)
            self.inputs[submit.run_id] = json.loads(submit.input)
            self.open_runs += 1
        self.broker.deliver(at_ms, self.orchestrator.command, output.key, submit, at_ms)

    def _record_dispatcher(self, at_ms: int, key: str, event: Any) -> None:
        self.dispatch_events.append(SimEvent(at_ms, key, event))

    def _route_dispatcher(self, output: Output, at_ms: int) -> None:
        if output.topic == "work":
            self.broker.deliver(at_ms, self.offer, output.value, at_ms)

    def _route_breaker(self, output: Output, at_ms: int) -> None:
        if output.topic == "breakers":
            self.broker.deliver(at_ms, self.breakers.__setitem__, output.key, output.value)
        elif output.topic == "inbox":  # a permit granted or denied: the waiting attempt reads it
            answer: Any = output.value  # PermitGranted | PermitDenied
            self.broker.deliver(at_ms, self.permit_answers.__setitem__,
                                (answer.key, answer.try_no, answer.worker_id, answer.epoch), answer)

    # ------------------------------------------------------------ the end

    def ended(self, state: RunState | None) -> bool:
        if state is None or state.status is not RunStatus.RUNNING:
            return True
        return all(t.status in (TaskStatus.SUCCEEDED, TaskStatus.DEAD_LETTERED, TaskStatus.BLOCKED)
                   for t in state.tasks.values())

    def all_ended(self) -> bool:
        states = self.orchestrator.states
        return all(self.ended(states.get(run_id)) for run_id in self.run_index)

    def runs(self) -> list[SimRun]:
        found = []
        for run_id, index in self.run_index.items():
            state: RunState | None = self.orchestrator.states.get(run_id)
            found.append(_sim_run(index, run_id, self.inputs[run_id], state, self.ended(state)))
        return found


def _hints(decider: OrchestratorDecider, faults: Faults) -> OrchestratorHints:
    """The orchestrator's recorded inputs as production makes them (free worker slots from
    completions, granted to new runs' roots, recorded as ``RunSubmitted.free_slots``), on
    for half the seeds: the seed decides whether roots are granted from spare slots or
    offered and claimed."""
    spare = SpareSlots(DEFAULT_WINDOW_MS) if unit(faults.seed, "hints:free-slots") < 0.5 else None
    return OrchestratorHints(decider.plans, spare)


def _sim_run(index: int, run_id: str, payload: Any, state: RunState | None, ended: bool) -> SimRun:
    if state is None:
        return SimRun(index, run_id, payload, "running", {}, "never submitted")
    outputs = {name: _decoded(task.output) for name, task in state.tasks.items() if task.output is not None}
    if state.status is not RunStatus.RUNNING:
        return SimRun(index, run_id, payload, state.status.value, outputs, state.reason)
    if ended:
        dead = [name for name, task in state.tasks.items() if task.status is TaskStatus.DEAD_LETTERED]
        reason = "; ".join(f"{name}: {state.tasks[name].last_error}" for name in dead)
        return SimRun(index, run_id, payload, "dead_lettered", outputs, reason)
    stuck = ", ".join(f"{name} {task.status.value}" for name, task in state.tasks.items()
                      if task.status not in (TaskStatus.SUCCEEDED, TaskStatus.DEAD_LETTERED, TaskStatus.BLOCKED))
    return SimRun(index, run_id, payload, "running", outputs, f"not ended: {stuck}")


def _decoded(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
