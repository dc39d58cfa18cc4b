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

import json
from collections.abc import Callable
from typing import Any

from taskplane.contract.approvals import sign
from taskplane.contract.breaker import BreakerState
from taskplane.contract.cron import ScheduleSpec
from taskplane.contract.decider import Output
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
from taskplane.processors.dispatch.decider import DispatchDecider
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.hints import OrchestratorHints
from taskplane.processors.orchestrator.spare import DEFAULT_WINDOW_MS, SpareSlots
from taskplane.testing.simulation.cron import SimCron
from taskplane.testing.simulation.faults import Faults, unit
from taskplane.testing.simulation.processor import Broker, Loop, Processor
from taskplane.testing.simulation.result import SimEvent, SimRun, ToolExecution

SUBMIT_SPACING_MS = 10
HORIZON_MS = 24 * 3_600_000  # a run not ended a virtual day later never will
# A simulated person grants each approval this long after it was asked, signed with the
# simulation's own key (the orchestrator checks it as in production).
PERSON_MS = 500
PERSON_KEY = b"taskplane simulate: a simulated person"


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
        # its calendar hints in virtual time (cron.py); a fired slot's run is a run like any.
        self.crons = SimCron(self)
        self.cron = self.crons.processor
        self.cron_events = self.crons.events
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
        once ``slots`` slots fired or were skipped."""
        self.crons.apply(schedules, slots)

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
            self.crons.notice(output, at_ms)
        # deadletter and systems: read from the events and the states

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
