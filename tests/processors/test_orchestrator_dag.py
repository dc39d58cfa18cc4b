"""Submission, DAG readiness, completion, cancellation and the finished-run rules."""

from __future__ import annotations

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import (
    Assignment,
    ClaimTask,
    CommandRejected,
    CompleteTask,
    LeaseGranted,
    RunSubmitted,
    TaskReady,
    Tick,
)
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.contract.plans import reference
from taskplane.contract.state import RunStatus, TaskStatus
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.outputs import outputs
from tests.processors._decider_helpers import RUN, Driver, document_pipeline, types


def test_submit_records_the_run_and_readies_the_roots() -> None:
    run = Driver()
    events = run.submit()
    assert events == [
        RunSubmitted(RUN, reference(run.plan), '{"path": "docs/"}', 1_000),  # the plan by name and version
        TaskReady(RUN, "parser", 1),
    ]
    assert run.task("validator").status is TaskStatus.PENDING
    assert run.state.plan is run.plan  # the state holds the one shared plan


def test_parallel_roots_are_ready_together() -> None:
    plan = SystemPlan("fan", "v1", (AgentPlan("a", None, (), ()), AgentPlan("b", None, (), ()),
                                    AgentPlan("c", None, (), ("a", "b"))), ExecutionPolicy())
    run = Driver(plan)
    assert types(run.submit()) == ["RunSubmitted", "TaskReady", "TaskReady"]
    assert {run.task("a").status, run.task("b").status} == {TaskStatus.READY}


def test_duplicate_submit_is_rejected_and_changes_nothing() -> None:
    run = Driver()
    run.submit()
    before = run.state
    [event] = run.submit()
    assert event == CommandRejected(RUN, "SubmitRun", None, None, "duplicate: run already submitted")
    assert run.state is before


def test_invalid_plans_are_rejected() -> None:
    cyclic = SystemPlan("c", "v1", (AgentPlan("a", None, (), ("b",)), AgentPlan("b", None, (), ("a",))),
                        ExecutionPolicy())
    unknown = SystemPlan("u", "v1", (AgentPlan("a", None, (), ("x",)),), ExecutionPolicy())
    for plan, reason in ((cyclic, "cycle"), (unknown, "unknown 'x'")):
        run = Driver(plan)
        [event] = run.submit()
        assert isinstance(event, CommandRejected) and reason in event.reason
        assert run.runner.states[RUN] is None


def test_any_other_command_for_an_unknown_run_is_rejected() -> None:
    runner = InMemoryRunner.of(OrchestratorDecider())
    [event] = runner.handle("nope", ClaimTask("nope", "parser", 1, "w1"), 5)
    assert event == CommandRejected("nope", "ClaimTask", "parser", "w1", "unknown run")
    assert runner.handle("nope", Tick(5), 5) == []


def test_downstream_becomes_ready_only_when_all_dependencies_succeeded() -> None:
    run = Driver()
    run.submit()
    events = run.run_task("parser")
    assert types(events) == ["TaskSucceeded", "TaskReady", "TaskReady"]
    assert [e.task for e in events[1:]] == ["validator", "summarizer"]  # type: ignore[union-attr]
    assert types(run.run_task("validator")) == ["TaskSucceeded"]
    assert run.task("publisher").status is TaskStatus.PENDING
    events = run.run_task("summarizer")
    assert events[-1] == TaskReady(RUN, "publisher", 1)


def test_a_completion_with_free_slots_is_granted_the_tasks_it_readies() -> None:
    run = Driver()
    run.submit()
    run.claim("parser", "w1")
    lease = run.task("parser")
    events = run.send(CompleteTask(RUN, "parser", "w1", lease.epoch, '"parsed"', follow_on=1))
    assert types(events) == ["TaskSucceeded", "TaskReady", "LeaseGranted", "TaskReady"]
    assert events[1] == TaskReady(RUN, "validator", 1, offered=False)
    assert events[2] == LeaseGranted(RUN, "validator", 1, "w1", 1, run.now + run.plan.execution.lease_timeout_ms)
    assert events[3] == TaskReady(RUN, "summarizer", 1)  # no slot left: offered on work
    assert (run.task("validator").status, run.task("validator").holder) == (TaskStatus.LEASED, "w1")
    records = [o for e in events for o in outputs(run.state, e)]
    assert [(o.topic, type(o.value).__name__) for o in records] == [("inbox", "Assignment"), ("work", "WorkItem")]
    assignment = records[0].value
    assert isinstance(assignment, Assignment) and assignment.dependency_outputs == {"parser": '"parsed"'}


def test_follow_on_slots_never_grant_a_task_whose_dependencies_are_running() -> None:
    run = Driver()
    run.submit()
    run.run_task("parser")
    run.claim("validator", "w1")
    run.claim("summarizer", "w2")
    events = run.send(CompleteTask(RUN, "validator", "w1", run.task("validator").epoch, '"ok"', follow_on=3))
    assert types(events) == ["TaskSucceeded"]
    events = run.send(CompleteTask(RUN, "summarizer", "w2", run.task("summarizer").epoch, '"ok"', follow_on=3))
    assert types(events) == ["TaskSucceeded", "TaskReady", "LeaseGranted"]
    assert run.task("publisher").holder == "w2"


def test_last_success_finishes_the_run() -> None:
    run = Driver()
    run.submit()
    for task in ("parser", "validator", "summarizer"):
        run.run_task(task)
    run.now = 9_000
    events = run.run_task("publisher")
    assert types(events) == ["TaskSucceeded", "RunSucceeded"]
    assert run.state.status is RunStatus.SUCCEEDED and run.state.finished_ms == 9_000
    assert run.runner.decider.next_deadline(run.state) is None


def test_an_unready_task_cannot_be_claimed() -> None:
    run = Driver()
    run.submit()
    [event] = run.claim("publisher", attempt=1)
    assert isinstance(event, CommandRejected) and event.reason == "not ready (task is pending)"


def test_unknown_task_is_rejected() -> None:
    run = Driver()
    run.submit()
    [event] = run.claim("nobody", attempt=1)
    assert isinstance(event, CommandRejected) and event.reason == "unknown task 'nobody'"


def test_cancel_ends_every_open_task_and_rejects_the_holder_afterwards() -> None:
    run = Driver()
    run.submit()
    run.run_task("parser")
    run.claim("validator")
    assert types(run.cancel("user asked")) == ["RunCancelled"]
    state = run.state
    assert state.status is RunStatus.CANCELLED and state.reason == "user asked"
    assert state.tasks["parser"].status is TaskStatus.SUCCEEDED
    assert {state.tasks[t].status for t in ("validator", "summarizer", "publisher")} == {TaskStatus.CANCELLED}
    [event] = run.complete("validator", epoch=1)
    assert isinstance(event, CommandRejected) and event.reason == "run already cancelled"
    assert run.runner.decider.next_deadline(run.state) is None


def test_commands_for_a_finished_run_are_rejected_but_ticks_are_ignored() -> None:
    run = Driver()
    run.submit()
    run.cancel()
    [event] = run.cancel()
    assert isinstance(event, CommandRejected) and event.reason == "run already cancelled"
    assert run.send(Tick(run.now + 60_000)) == []  # within the retention (test_orchestrator_retention.py)


def test_empty_plan_succeeds_at_once() -> None:
    run = Driver(SystemPlan("empty", "v1", (), ExecutionPolicy()))
    assert types(run.submit()) == ["RunSubmitted", "RunSucceeded"]


def test_ready_tasks_are_offered_on_work() -> None:
    run = Driver(document_pipeline())
    run.submit()
    [work] = [o for o in run.runner.outputs if o.topic != "runs"]
    assert (work.topic, work.key) == ("work", f"{RUN}/parser")
