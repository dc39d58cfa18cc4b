"""Root grants: a new run's root tasks granted at submit to a worker whose completion
reported a free slot a moment before (``spare.py``), instead of offered on ``work``."""

from __future__ import annotations

import pytest

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import Assignment, CompleteTask, LeaseGranted, SubmitRun, TaskReady
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.contract.state import TaskStatus
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.outputs import outputs
from taskplane.processors.orchestrator.spare import SpareSlots
from tests.processors._decider_helpers import Driver, document_pipeline, types


def test_the_freshest_report_with_a_slot_is_used_and_each_slot_once() -> None:
    spare = SpareSlots(window_ms=100)
    spare.note("s", "w1", 1, 1_000)
    spare.note("s", "w2", 2, 1_010)
    assert [spare.take("s", 1_020) for _ in range(4)] == ["w2", "w2", "w1", None]


def test_a_report_replaces_the_workers_earlier_one() -> None:
    spare = SpareSlots(window_ms=100)
    spare.note("s", "w1", 3, 1_000)
    spare.note("s", "w1", 0, 1_005)  # busy now: nothing left of the 3
    assert spare.take("s", 1_010) is None
    spare.note("s", "w1", 1, 1_020)
    assert spare.take("s", 1_030) == "w1"


def test_only_fresh_reports_of_the_same_system_count() -> None:
    spare = SpareSlots(window_ms=100)
    spare.note("other", "w9", 4, 1_000)
    spare.note("s", "w1", 4, 1_000)
    assert spare.take("s", 1_101) is None  # 101 ms old
    assert spare.take("s", 1_050) is None  # dropped once found stale: it never gets fresh again
    spare.note("s", "w2", 1, 2_000)
    assert spare.take("s", 1_950) == "w2"  # the submitter's clock a little behind the worker's
    assert spare.take("s", 2_000) is None
    # A submit that waited in a backlog: reports written long after it are fresh.
    spare.note("s", "w3", 1, 9_000)
    assert spare.take("s", 2_500) == "w3"


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError, match="window_ms"):
        SpareSlots(-1)


def with_spare(window_ms: int = 250) -> Driver:
    return Driver(runner=InMemoryRunner.of(OrchestratorDecider(spare=SpareSlots(window_ms))))


def finish_a_run(driver: Driver, worker: str, follow_on: int) -> None:
    """Run ``driver``'s run to its end on ``worker``, whose last completion offers ``follow_on``."""
    driver.submit()
    if driver.task("parser").status is TaskStatus.READY:
        driver.claim("parser", worker)
    for task in ("parser", "validator", "summarizer", "publisher"):
        if driver.task(task).status is TaskStatus.READY:
            driver.claim(task, worker)
        offer = follow_on if task == "publisher" else 0
        driver.send(CompleteTask(driver.run_id, task, worker, driver.task(task).epoch, '"ok"', offer))


def test_a_run_submitted_after_a_completion_with_free_slots_has_its_root_granted() -> None:
    first = with_spare()
    finish_a_run(first, "w1", follow_on=2)
    second = Driver(run_id="run-2", now=first.now + 40, runner=first.runner)
    events = second.submit()
    assert types(events) == ["RunSubmitted", "TaskReady", "LeaseGranted"]
    assert events[1] == TaskReady("run-2", "parser", 1, offered=False)
    assert events[2] == LeaseGranted("run-2", "parser", 1, "w1", 1,
                                     second.now + second.plan.execution.lease_timeout_ms)
    records = [o for e in events for o in outputs(second.state, e) if o.topic != "runs"]  # runs: the index
    assert [(o.topic, o.key) for o in records] == [("inbox", "w1")]  # no WorkItem, no claim
    assignment = records[0].value
    assert isinstance(assignment, Assignment) and assignment.granted and assignment.input == '{"path": "docs/"}'


def test_without_a_fresh_report_roots_are_offered_as_before() -> None:
    first = with_spare(window_ms=250)
    finish_a_run(first, "w1", follow_on=1)
    late = Driver(run_id="run-2", now=first.now + 251, runner=first.runner)
    assert types(late.submit()) == ["RunSubmitted", "TaskReady"]
    assert [o.topic for o in first.runner.outputs[-1:]] == ["work"]
    unwired = Driver()  # no spare slots given: the default decider never grants at submit
    finish_a_run(unwired, "w1", follow_on=4)
    again = Driver(run_id="run-2", now=unwired.now, runner=unwired.runner)
    assert types(again.submit()) == ["RunSubmitted", "TaskReady"]


def test_follow_on_grants_use_the_offered_slots_first() -> None:
    run = with_spare()
    run.submit()
    run.claim("parser", "w1")
    run.send(CompleteTask(run.run_id, "parser", "w1", run.task("parser").epoch, '"p"', follow_on=3))
    assert {run.task("validator").holder, run.task("summarizer").holder} == {"w1"}
    fan = SystemPlan("document-pipeline", "v2", (AgentPlan("a", None, (), ()), AgentPlan("b", None, (), ())),
                     ExecutionPolicy())
    events = run.runner.handle("run-2", SubmitRun("run-2", fan, "{}"), run.now + 1)
    # one slot left of the 3 after the two follow-on grants: a is granted, b offered
    assert types(events) == ["RunSubmitted", "TaskReady", "LeaseGranted", "TaskReady"]
    assert events[3] == TaskReady("run-2", "b", 1)


def test_a_root_granted_at_submit_is_an_ordinary_lease() -> None:
    first = with_spare()
    finish_a_run(first, "w1", follow_on=1)
    second = Driver(document_pipeline(), run_id="run-2", now=first.now + 1, runner=first.runner)
    second.submit()
    assert (second.task("parser").status, second.task("parser").holder) == (TaskStatus.LEASED, "w1")
    assert types(second.claim("parser", "w2")) == ["CommandRejected"]  # already leased
    second.now += second.plan.execution.lease_timeout_ms
    assert "LeaseExpired" in types(second.runner.advance(second.now))  # a dead holder's lease expires
    assert second.task("parser").status is TaskStatus.BACKOFF
