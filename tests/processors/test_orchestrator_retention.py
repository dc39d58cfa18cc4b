"""Finished runs retire to a final record and are then forgotten; plans are held once
and referenced. Retirement never changes what was decided for a run."""

from __future__ import annotations

import pytest

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import (
    ClaimTask,
    CommandRejected,
    RunRetired,
    SubmitRun,
)
from taskplane.contract.plan import ExecutionPolicy, SystemPlan
from taskplane.contract.plans import PlanBook, pinned_key, reference
from taskplane.contract.state import RunStatus
from taskplane.processors.orchestrator.decider import OrchestratorDecider, UnknownPlan
from taskplane.processors.orchestrator.hints import OrchestratorHints
from taskplane.processors.orchestrator.retention import DAY_MS, HOUR_MS, Retention
from taskplane.streams.runtime import state_meta
from taskplane.streams.serde import Serde
from tests.processors._decider_helpers import RUN, Driver, document_pipeline, types


def finished(retention: Retention | None = None, plan: SystemPlan | None = None) -> Driver:
    run = Driver(plan or document_pipeline(),
                 runner=InMemoryRunner.of(OrchestratorDecider(retention=retention)))
    run.submit()
    for task in ("parser", "validator", "summarizer", "publisher"):
        run.run_task(task)
    assert run.state.status is RunStatus.SUCCEEDED
    return run


def rejection(events: list[object]) -> str:
    [event] = events
    assert isinstance(event, CommandRejected)
    return event.reason


def test_a_finished_run_keeps_its_whole_state_for_the_retention() -> None:
    run = finished()
    assert run.advance(HOUR_MS - 1) == []
    assert run.state.tasks and run.state.retired_ms is None


def test_after_the_retention_a_final_record_answers_late_commands_and_duplicates() -> None:
    run = finished()
    finished_ms = run.state.finished_ms
    assert types(run.advance(HOUR_MS)) == ["RunRetired"]
    record = run.state
    assert (record.status, record.finished_ms, record.tasks, record.journal, record.input) == (
        RunStatus.SUCCEEDED, finished_ms, {}, {}, "")
    assert rejection(run.send(ClaimTask(RUN, "parser", 1, "late"))) == "run already succeeded"
    assert rejection(run.submit()) == "duplicate: run already submitted"


def test_after_the_final_record_retention_the_run_is_unknown_and_can_start_again() -> None:
    run = finished()
    run.advance(HOUR_MS)
    assert run.advance(6 * DAY_MS) == []
    assert types(run.advance(DAY_MS)) == ["RunForgotten"]
    assert RUN not in run.runner.states
    assert rejection(run.send(ClaimTask(RUN, "parser", 1, "late"))) == "unknown run"
    assert types(run.submit()) == ["RunSubmitted", "TaskReady"]  # a new run


def test_a_system_sets_its_own_retention_and_the_processor_its_default() -> None:
    own = finished(plan=document_pipeline(ExecutionPolicy(finished_run_retention_ms=60_000)))
    assert types(own.advance(60_000)) == ["RunRetired"]
    short = finished(Retention(finished_run_ms=1_000, final_record_ms=2_000))
    assert types(short.advance(1_000)) == ["RunRetired"]
    assert types(short.advance(1_000)) == ["RunForgotten"]


def test_timers_hold_live_runs_only() -> None:
    run = finished()
    decider = run.runner.decider
    assert decider.next_deadline(run.state) is None
    assert decider.retire_at(run.state) == run.state.finished_ms + HOUR_MS
    live = Driver()
    live.submit()
    live.claim("parser")
    assert live.runner.decider.retire_at(live.state) is None
    assert live.runner.decider.next_deadline(live.state) is not None


def test_retiring_never_changes_what_was_decided() -> None:
    """The same commands with retirement due between any two of them decide the same
    events for the run until it finished."""
    plain = finished(Retention(finished_run_ms=10 * DAY_MS, final_record_ms=10 * DAY_MS))
    eager = Driver(document_pipeline(), runner=InMemoryRunner.of(OrchestratorDecider(retention=Retention(0, 0))))
    eager.submit()
    for task in ("parser", "validator", "summarizer", "publisher"):
        eager.advance(0)  # a tick between commands: nothing to retire while it runs
        eager.run_task(task)
    retired = [event for _, event in eager.runner.log]
    assert retired == [event for _, event in plain.runner.log]
    assert types(eager.advance(0)) == ["RunRetired"]
    assert isinstance(eager.runner.log[-1][1], RunRetired)


# ---------------------------------------------------------------- plans referenced


def test_the_state_is_stored_with_a_reference_and_restored_with_the_shared_plan() -> None:
    run = Driver()
    run.submit()
    run.claim("parser")
    table = {pinned_key(run.plan.name, run.plan.version): run.plan}
    decider = run.runner.decider
    stored = decider.snapshot(run.state)
    assert stored.plan == reference(run.plan) and not stored.plan.agents
    fresh = OrchestratorDecider(PlanBook(lambda name, version: table.get(pinned_key(name, version))))
    before = dict(run.runner.states)
    run.runner.restart(fresh)
    assert run.runner.states == before
    assert run.state.plan is fresh.plans.get(run.plan.name, run.plan.version)
    assert types(run.complete("parser")) == ["TaskSucceeded", "TaskReady", "TaskReady"]


def test_a_running_state_whose_plan_no_source_knows_is_not_restored() -> None:
    run = Driver()
    run.submit()
    with pytest.raises(UnknownPlan, match="document-pipeline"):
        run.runner.restart(OrchestratorDecider())


def test_a_final_record_restores_without_its_plan() -> None:
    run = finished()
    run.advance(HOUR_MS)
    run.runner.restart(OrchestratorDecider())
    assert rejection(run.submit()) == "duplicate: run already submitted"


def test_a_state_stored_with_its_plan_body_restores_and_the_book_learns_the_plan() -> None:
    run = Driver()
    run.submit()
    decider = OrchestratorDecider()
    restored = decider.restored(run.state)  # as release 1 wrote it: the body inline
    assert restored == run.state
    assert decider.plans.get(run.plan.name, run.plan.version) == run.plan


def test_one_version_names_one_plan() -> None:
    run = Driver()
    run.submit()
    other = SystemPlan(run.plan.name, run.plan.version, run.plan.agents[:1], ExecutionPolicy())
    reason = rejection(run.runner.handle("run-2", SubmitRun("run-2", other, "{}"), run.now))
    assert reason.startswith("invalid plan:") and "another body" in reason


def test_the_plan_is_pinned_on_systems_once_when_the_table_lacks_it() -> None:
    table: dict[str, SystemPlan] = {}
    decider = OrchestratorDecider(PlanBook(lambda n, v: table.get(pinned_key(n, v))))
    runner = InMemoryRunner.of(decider, hints=lambda: OrchestratorHints(decider.plans))  # pins are the hints' job
    plan = document_pipeline()
    runner.handle("r1", SubmitRun("r1", plan, "{}"), 1)
    runner.handle("r2", SubmitRun("r2", plan, "{}"), 2)
    pins = [o for o in runner.outputs if o.topic == "systems"]
    assert [(o.key, o.value.plan) for o in pins] == [(pinned_key(plan.name, plan.version), plan)]  # type: ignore[attr-defined]


def test_encoded_state_per_live_run_stays_under_a_kilobyte() -> None:
    run = Driver()
    run.submit()
    run.run_task("parser")
    run.claim("validator")
    run.record("validator", 0)
    serde = Serde()
    stored = serde.encode(run.runner.decider.snapshot(run.state), state_meta(RUN))
    with_body = serde.encode(run.state, state_meta(RUN))
    assert len(stored) <= 1024
    assert len(with_body) - len(stored) >= 200  # the body is not stored
