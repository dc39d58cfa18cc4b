"""Invariant 4: the state is a function of the log. Folding a recorded log through
``evolve`` gives the live state, and a log stored as a fixture still folds to the
state stored next to it, so an incompatible change to ``evolve`` is caught.

``document_pipeline_log.json`` was recorded before plans were referenced (its
``RunSubmitted`` events carry the plan's body) and is never rewritten: old logs must
keep folding. ``document_pipeline_log_v2.json`` is what the current decider writes;
regenerate it (only for a deliberate, migrated change) with
``python tests/processors/test_replay.py``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import (
    ClaimTask,
    Command,
    Event,
    FailureKind,
    RunSubmitted,
)
from taskplane.contract.plan import ExecutionPolicy, SystemPlan
from taskplane.contract.plans import PlanBook, pinned_key
from taskplane.contract.state import RunState
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.evolve import InconsistentLog, _with_task
from taskplane.processors.orchestrator.retention import DAY_MS, HOUR_MS
from tests.processors._decider_codec import EVENT_TYPES, decode, encode, read_fixture, write_fixture
from tests.processors._decider_helpers import Driver, document_pipeline

FIXTURES = Path(__file__).parent / "fixtures"
RELEASE_1 = FIXTURES / "document_pipeline_log.json"  # plan bodies in RunSubmitted
FIXTURE = FIXTURES / "document_pipeline_log_v2.json"  # plan references
PLAN = document_pipeline(ExecutionPolicy(max_retries=2))


def systems_table(*plans: SystemPlan) -> PlanBook:
    """A book whose lookup is the ``systems`` topic holding ``plans`` (key name@version)."""
    table = {pinned_key(p.name, p.version): p for p in plans}
    return PlanBook(lambda name, version: table.get(pinned_key(name, version)))


def recorded_runner() -> InMemoryRunner[RunState, Command, Event]:
    """Runs that touch every event type: a cancelled run retired, answered from its
    final record, forgotten and submitted again; retries, a lease expiry, a
    breaker-open retry, a dead letter with blocked downstream, a replay, rejections,
    success; and a cancelled run."""
    run = Driver(PLAN, run_id="run-ok")
    expired = Driver(run.plan, run_id="run-expired", now=run.now, runner=run.runner)
    expired.submit()
    expired.cancel("superseded")
    expired.advance(HOUR_MS)  # retired: the final record stays
    expired.send(ClaimTask("run-expired", "parser", 1, "w9"))  # run already cancelled
    expired.submit()  # duplicate
    expired.advance(7 * DAY_MS)  # forgotten
    expired.send(ClaimTask("run-expired", "parser", 1, "w9"))  # unknown run
    expired.submit()  # the same id again: a new run
    run.now = expired.now
    run.submit()
    run.submit()  # duplicate
    run.claim("parser", "w1")
    run.record("parser", 0)
    run.advance(10_000)  # lease expires
    run.retry_until_ready("parser")
    run.claim("parser", "w2")
    run.record("parser", 0, worker="w2")  # duplicate tool call
    run.record("parser", 1, worker="w2", ok=False)
    run.record("parser", 1, worker="w2")
    run.renew("parser", "w2")
    run.complete("parser", "w2")
    run.claim("summarizer", "w3")
    run.fail("summarizer", "w3", FailureKind.BREAKER_OPEN, retry_after_ms=20_000)
    run.claim("validator", "w1")
    run.fail("validator", "w1", error="schema missing")
    run.retry_until_ready("validator")
    run.claim("validator", "w1")
    run.fail("validator", "w1", error="schema still missing")  # dead letter, publisher blocked
    run.retry_until_ready("summarizer")
    run.run_task("summarizer", "w3")
    run.replay("validator")
    run.run_task("validator", "w1")
    run.claim("publisher", "w1")
    run.release("publisher", "w1")
    run.run_task("publisher", "w2")

    other = Driver(run.plan, run_id="run-cancelled", now=run.now, runner=run.runner)
    other.submit()
    other.claim("parser")
    other.cancel("user asked")
    other.send(ClaimTask("run-cancelled", "validator", 1, "w9"))
    return run.runner


def fold(log: list[tuple[str, Event]], plans: PlanBook | None = None) -> dict[str, RunState | None]:
    decider = OrchestratorDecider(plans)
    states: dict[str, RunState | None] = {}
    for key, event in log:
        state = decider.evolve(states.get(key), event)
        if state is None:
            states.pop(key, None)
        else:
            states[key] = state
    return states


def test_the_recorded_scenario_covers_every_event_type() -> None:
    seen = {type(event).__name__ for _, event in recorded_runner().log}
    # A failed run ends differently, and approvals need a plan that asks for them: both
    # are folded and replayed in their own tests (test_approvals.py for the latter).
    approvals = {"ApprovalRequested", "ApprovalGranted", "ApprovalDenied", "ApprovalExpired"}
    assert set(EVENT_TYPES) - seen == {"RunFailed", *approvals}


def test_folding_the_log_gives_the_live_state() -> None:
    runner = recorded_runner()
    assert fold(runner.log, systems_table(PLAN)) == runner.states


def test_folding_needs_the_referenced_plan() -> None:
    with pytest.raises(InconsistentLog):  # the run has no tasks to make ready
        fold(recorded_runner().log)


def test_folding_the_stored_log_gives_the_stored_state() -> None:
    log, expected = read_fixture(FIXTURE)
    assert fold(log, systems_table(PLAN)) == expected


def test_a_log_with_plan_bodies_still_folds_with_no_systems_table() -> None:
    log, expected = read_fixture(RELEASE_1)
    first = log[0][1]
    assert isinstance(first, RunSubmitted) and first.plan.agents  # the body, as release 1 wrote it
    assert fold(log) == expected


def test_current_decisions_still_write_the_stored_log() -> None:
    # Not required for replay (events are facts), but a changed decision should be a
    # deliberate one: regenerate the fixture when it is.
    log, _ = read_fixture(FIXTURE)
    assert recorded_runner().log == log


def test_codec_round_trips_events_and_state() -> None:
    runner = recorded_runner()
    for _, event in runner.log:
        assert decode(type(event), encode(event)) == event
    for state in runner.states.values():
        assert state is not None and decode(RunState, encode(state)) == state
    assert isinstance(runner.log[0][1], RunSubmitted)


def test_with_task_keeps_every_other_run_field() -> None:
    state = recorded_runner().states["run-cancelled"]
    assert state is not None and state.reason and state.finished_ms and state.journal == {}
    assert _with_task(state, state.tasks["parser"]) == state
    other = dataclasses.replace(state.tasks["parser"], attempt=9)
    assert _with_task(state, other) == dataclasses.replace(state, tasks={**state.tasks, "parser": other})


if __name__ == "__main__":  # python -m tests.processors.test_replay, from the repo root
    built = recorded_runner()
    write_fixture(FIXTURE, built.log, built.states)
    print(f"wrote {FIXTURE} ({len(built.log)} events)")
