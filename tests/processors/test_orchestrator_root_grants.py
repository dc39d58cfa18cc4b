"""Root grants: a new run's root tasks granted at submit to a worker whose completion
reported a free slot a moment before (``spare.py``, ``hints.py``), instead of offered on
``work``. The slots are the submit's recorded input (``RunSubmitted.free_slots``)."""

from __future__ import annotations

import pytest

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import Assignment, CompleteTask, LeaseGranted, SubmitRun, TaskReady
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.contract.plans import PlanBook
from taskplane.contract.state import TaskStatus
from taskplane.processors.orchestrator.app import OrchestratorSettings, orchestrator_hints
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.hints import OrchestratorHints
from taskplane.processors.orchestrator.outputs import outputs
from taskplane.processors.orchestrator.spare import SpareSlots
from tests.processors._decider_helpers import Driver, document_pipeline, types


def take(spare: SpareSlots, system: str, at_ms: int) -> str | None:
    offered = spare.offer(system, at_ms, 1)
    if offered:
        spare.use(system, offered[0])
    return offered[0] if offered else None


def test_the_freshest_report_with_a_slot_is_offered_first_and_each_slot_once() -> None:
    spare = SpareSlots(window_ms=100)
    spare.note("s", "w1", 1, 1_000)
    spare.note("s", "w2", 2, 1_010)
    assert spare.offer("s", 1_020, 5) == ("w2", "w2", "w1")
    assert spare.offer("s", 1_020, 2) == ("w2", "w2")  # offering uses nothing
    assert [take(spare, "s", 1_020) for _ in range(4)] == ["w2", "w2", "w1", None]


def test_a_new_report_replaces_the_old_one() -> None:
    spare = SpareSlots(window_ms=100)
    spare.note("s", "w1", 3, 1_000)
    spare.note("s", "w1", 0, 1_005)  # busy now: nothing left of the 3
    assert take(spare, "s", 1_010) is None
    spare.note("s", "w1", 1, 1_020)
    assert take(spare, "s", 1_030) == "w1"


def test_only_fresh_reports_of_the_same_system_count() -> None:
    spare = SpareSlots(window_ms=100)
    spare.note("other", "w9", 4, 1_000)
    spare.note("s", "w1", 4, 1_000)
    assert take(spare, "s", 1_101) is None  # 101 ms old
    assert take(spare, "s", 1_050) is None  # dropped once found stale: it never gets fresh again
    spare.note("s", "w2", 1, 2_000)
    assert take(spare, "s", 1_950) == "w2"  # the submitter's clock a little behind the worker's
    assert take(spare, "s", 2_000) is None
    # A report younger than the submit is fresh however much younger: the submit waited.
    spare.note("s", "w3", 1, 9_000)
    assert take(spare, "s", 2_500) == "w3"


def test_an_aborted_batch_puts_the_slots_back_as_they_were() -> None:
    spare = SpareSlots(window_ms=100)
    spare.note("s", "w1", 2, 1_000)
    spare.note("s", "w2", 1, 1_001)
    spare.commit()
    spare.use("s", "w2")
    spare.note("s", "w3", 4, 1_002)
    spare.note("t", "w1", 1, 1_002)
    assert spare.offer("s", 1_010, 9) == ("w3",) * 4 + ("w1",) * 2
    spare.roll_back()
    assert spare.offer("s", 1_010, 9) == ("w2", "w1", "w1")
    assert spare.offer("t", 1_010, 9) == ()


def test_a_negative_window_is_refused() -> None:
    with pytest.raises(ValueError):
        SpareSlots(-1)


def with_spare(window_ms: int = 250) -> Driver:
    decider = OrchestratorDecider()
    return Driver(runner=InMemoryRunner.of(decider, hints=lambda: OrchestratorHints(decider.plans,
                                                                                      SpareSlots(window_ms))))


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
    assert events[0].free_slots == ("w1",)  # type: ignore[attr-defined]  # the input, recorded
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
    unwired = Driver()  # no hints: the decider alone never grants at submit
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


def test_a_submit_re_decided_with_its_recorded_input_decides_the_same() -> None:
    first = with_spare()
    finish_a_run(first, "w1", follow_on=1)
    second = Driver(run_id="run-2", now=first.now + 1, runner=first.runner)
    command = SubmitRun("run-2", second.plan, '{"path": "docs/"}')
    events = second.runner.handle("run-2", command, second.now)
    fresh = OrchestratorDecider()  # another process: no hints, only the log
    given = fresh.recorded(command, events)
    assert given == ("w1",)
    assert list(fresh.decide(None, command, second.now, given)) == events
    assert types(fresh.decide(None, command, second.now)) == ["RunSubmitted", "TaskReady"]  # the input mattered


class Table:
    """A ``systems`` table lookup that knows nothing: every version needs a pin."""

    def __call__(self, name: str, version: str) -> SystemPlan | None:
        return None


def test_a_version_is_pinned_once_per_partition_and_again_after_an_aborted_batch() -> None:
    decider = OrchestratorDecider(PlanBook(Table()))
    command = SubmitRun("run-1", document_pipeline(), "{}")
    events = list(decider.decide(None, command, 1_000))
    state = None
    for event in events:
        state = decider.evolve(state, event)

    def pins(hints: OrchestratorHints) -> list[str]:
        return [o.key for o in hints.decided(state, command, events, 1_000) if o.topic == "systems"]

    hints = OrchestratorHints(decider.plans)
    assert pins(hints) == ["document-pipeline@v1"]
    assert pins(hints) == []  # the same batch: written once
    hints.roll_back()  # the batch aborted, its pin with it: the retried batch writes it again
    assert pins(hints) == ["document-pipeline@v1"]
    hints.commit()
    hints.roll_back()
    assert pins(hints) == []  # committed: kept
    assert pins(OrchestratorHints(decider.plans)) == ["document-pipeline@v1"]  # another partition's own


def test_a_completion_on_one_partition_frees_a_slot_for_a_submit_on_another() -> None:
    decider = OrchestratorDecider()
    partition = {"run-1": 0, "run-2": 1}
    runner = InMemoryRunner.of(decider, hints=orchestrator_hints(decider.plans, OrchestratorSettings()),
                               scope=lambda key: partition[key])
    first = Driver(runner=runner)
    finish_a_run(first, "w1", follow_on=1)
    second = Driver(run_id="run-2", now=first.now + 40, runner=runner)
    events = second.submit()
    assert len(runner.sources) == 2  # two partitions' hint sources, one store of free slots
    assert types(events) == ["RunSubmitted", "TaskReady", "LeaseGranted"]
    assert events[0].free_slots == ("w1",)  # type: ignore[attr-defined]
