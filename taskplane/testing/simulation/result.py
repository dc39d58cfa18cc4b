"""What one simulated seed produced: the runs as they ended, the orchestrator's events in
log order, the breaker transitions, the faults that fired and what the invariants said."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class SimEvent(NamedTuple):
    """One event on the simulated ``events`` log: its log time and what it says (a tuple:
    thousands are made a seed)."""

    at_ms: int
    run_id: str
    event: Any

    @property
    def kind(self) -> str:
        return type(self.event).__name__


@dataclass(frozen=True, slots=True)
class SimRun:
    """A run as it ended: ``status`` is succeeded, failed, cancelled, dead_lettered or
    running (it did not end: a violation). ``outputs`` are the tasks' decoded outputs."""

    index: int
    run_id: str
    input: Any
    status: str
    outputs: dict[str, Any]
    reason: str | None = None


class ToolExecution(NamedTuple):
    """A tool function that really ran (not answered by the journal), with the fencing
    epoch of the attempt that ran it."""

    run_id: str
    task: str
    epoch: int
    tool: str
    key: str
    at_ms: int
    worker_id: str = ""


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str
    message: str
    run_ids: tuple[str, ...] = ()


@dataclass(slots=True)
class SimulationResult:
    """Handed to user invariants (``@taskplane.testing.invariant``) after each seed."""

    seed: int
    runs: list[SimRun]
    events: list[SimEvent]
    breaker_events: list[SimEvent]
    executions: list[ToolExecution]
    faults: list[str]
    virtual_ms: int
    commands: int
    violations: list[Violation] = field(default_factory=list)
    fault_times: list[tuple[int, str]] = field(default_factory=list)  # when each fault fired (virtual ms)
    crashes: dict[str, int] = field(default_factory=dict)  # worker id -> when it died (virtual ms)
    cron_events: list[SimEvent] = field(default_factory=list)  # the cron decider's (key: the system)
    started_ahead: int = 0  # follow-on tasks workers started before their grant (workers/speculation.py)
    cron_down: list[tuple[int, int]] = field(default_factory=list)  # the cron processor's crashes (died, back)
    ended_ms: int = 0  # virtual time when nothing was left to happen

    def run(self, run_id: str) -> SimRun:
        return next(run for run in self.runs if run.run_id == run_id)

    def events_of(self, run_id: str) -> list[SimEvent]:
        return [e for e in self.events if e.run_id == run_id]
