"""The orchestrator's hints (``contract.decider.Hints``), one per partition.

- **Free slots** (``spare.py``): a ``SubmitRun`` is given the fresh free slots of its
  system, at most one per root task; the decider grants root ``i`` to ``given[i]`` and
  records them as ``RunSubmitted.free_slots``. A completion's leftover ``follow_on`` is
  noted; a submit's grants use slots. Both are learnt from the decision's events.
- **Plan pins**: the first ``RunSubmitted`` of a plan version the ``systems`` table does
  not know writes it there (``name@version``), so a restart resolves what the run
  references. Which versions this partition already pinned is remembered per batch: an
  aborted batch's pin is written again when the batch is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from taskplane.contract.decider import Output
from taskplane.contract.messages import (
    Command,
    CompleteTask,
    Event,
    LeaseGranted,
    RunSubmitted,
    SubmitRun,
    TaskSucceeded,
)
from taskplane.contract.plan import SystemDefinition
from taskplane.contract.plans import PlanBook, pinned_key
from taskplane.contract.state import RunState
from taskplane.processors.orchestrator.dispatching import dispatched
from taskplane.processors.orchestrator.spare import SpareSlots

_NO_OUTPUTS: tuple[Output, ...] = ()


class OrchestratorHints:
    """``Hints[RunState, Command, Event]``: free slots (when ``spare``) and plan pins."""

    __slots__ = ("_announced", "_announcing", "plans", "spare")

    def __init__(self, plans: PlanBook, spare: SpareSlots | None = None) -> None:
        self.plans = plans
        self.spare = spare
        self._announced: set[tuple[str, str]] = set()  # versions this partition pinned (committed)
        self._announcing: list[tuple[str, str]] = []  # ... in the open batch

    def given(self, state: RunState | None, command: Command, at_ms: int) -> tuple[str, ...] | None:
        if self.spare is None or state is not None or type(command) is not SubmitRun:
            return None
        plan = command.plan
        if dispatched(plan, command.tenant, command.priority):
            return None  # admitted by the dispatcher, not by a root grant
        roots = sum(1 for agent in plan.agents if not agent.dependencies)
        return self.spare.offer(plan.name, at_ms, roots) or None

    def decided(self, state: RunState | None, command: Command, events: Sequence[Event],
                at_ms: int) -> Iterable[Output]:
        kind = type(command)
        if kind is CompleteTask:
            # What the completer's free slots leave after its follow-on grants (the only
            # grants a completion makes): its spare capacity now (0 clears its report).
            if self.spare is not None and state is not None and events and type(events[0]) is TaskSucceeded:
                assert isinstance(command, CompleteTask)
                granted = sum(1 for event in events if type(event) is LeaseGranted)
                self.spare.note(state.plan.name, command.worker_id, command.follow_on - granted, at_ms)
            return _NO_OUTPUTS
        if kind is SubmitRun and state is not None and events and type(events[0]) is RunSubmitted:
            plan = state.plan
            if self.spare is not None:
                for event in events:
                    if type(event) is LeaseGranted:
                        self.spare.use(plan.name, event.worker_id)
            return self._pin(plan.name, plan.version, state)
        return _NO_OUTPUTS

    def commit(self) -> None:
        self._announcing.clear()
        if self.spare is not None:
            self.spare.commit()

    def roll_back(self) -> None:
        for version in self._announcing:
            self._announced.discard(version)
        self._announcing.clear()
        if self.spare is not None:
            self.spare.roll_back()

    def _pin(self, name: str, version: str, state: RunState) -> Iterable[Output]:
        key = (name, version)
        if key in self._announced:
            return _NO_OUTPUTS
        self._announced.add(key)
        if not self.plans.needs_pin(name, version):
            return _NO_OUTPUTS  # on the systems topic: durable, nothing to undo
        self._announcing.append(key)
        plan = state.plan
        return (Output("systems", pinned_key(name, version), SystemDefinition(name, version, plan, "")),)
