"""The client's fold of a run's events, without a broker."""

from __future__ import annotations

from taskplane.client._run_view import RunView
from taskplane.contract import messages as m
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan

PLAN = SystemPlan("diamond", "v1", (
    AgentPlan("fetch", None, (), ()),
    AgentPlan("left", None, (), ("fetch",)),
    AgentPlan("right", None, (), ("fetch",)),
    AgentPlan("join", None, (), ("left", "right")),
    AgentPlan("audit", None, (), ("fetch",)),
), ExecutionPolicy())


def fold(*events: object) -> RunView:
    view = RunView("r1")
    for offset, event in enumerate(events):
        view.apply(offset, event)
    return view


def test_the_result_is_every_final_tasks_output() -> None:
    view = fold(m.RunSubmitted("r1", PLAN, "{}", 10),
                m.TaskSucceeded("r1", "join", 1, 1, '{"sum": 3}'),
                m.TaskSucceeded("r1", "audit", 1, 1, "plain text"),
                m.RunSucceeded("r1", 20))
    assert view.final_tasks == ("join", "audit")
    assert view.result() == {"join": {"sum": 3}, "audit": "plain text"}
    assert (view.status, view.settled, view.info().finished_ms) == ("succeeded", True, 20)


def test_an_offset_applied_twice_counts_once() -> None:
    view = RunView("r1")
    assert view.apply(5, m.RunSubmitted("r1", PLAN, "{}", 10))
    assert not view.apply(5, m.RunSubmitted("r1", PLAN, "{}", 10))
    assert not view.apply(3, m.TaskReady("r1", "fetch", 1))
    assert view.apply(6, m.TaskReady("r1", "fetch", 1))
    assert view.applied == 2 and view.tasks["fetch"] == "ready"


def test_a_dead_letter_settles_the_run_until_replayed() -> None:
    view = fold(m.RunSubmitted("r1", PLAN, "{}", 10),
                m.TaskDeadLettered("r1", "fetch", 3, "boom", 15),
                m.TaskBlocked("r1", "left", "fetch"))
    assert (view.status, view.settled, view.tasks["left"]) == ("dead_lettered", True, "blocked")
    assert view.info().dead_letters[0].attempts == 3
    view.apply(10, m.TaskReplayed("r1", "fetch", 4, "op"))
    view.apply(11, m.TaskReady("r1", "fetch", 4))
    assert (view.status, view.settled, view.tasks["left"], view.tasks["fetch"]) == ("running", False, "pending", "ready")


def test_a_rejected_submit_ends_an_unknown_run_but_not_a_known_one() -> None:
    refused = fold(m.CommandRejected("r1", "SubmitRun", None, None, "invalid plan: cycle"))
    assert (refused.status, refused.reason, refused.known) == ("rejected", "invalid plan: cycle", True)
    duplicate = fold(m.RunSubmitted("r1", PLAN, "{}", 10),
                     m.CommandRejected("r1", "SubmitRun", None, None, "duplicate: run already submitted"))
    assert duplicate.status == "running"
    assert RunView("r2").status == "pending" and not RunView("r2").known


def test_a_view_from_the_runs_record_is_the_fold_of_its_events() -> None:
    """The orchestrator's index record and the client's fold of the same run agree."""
    from taskplane.client._run_view import from_record
    from taskplane.contract.plan import ExecutionPolicy as Policy
    from taskplane.processors.orchestrator.run_index import run_record
    from tests.processors._decider_helpers import RUN, Driver, document_pipeline

    for dead_letter in (False, True):
        run = Driver(document_pipeline(Policy(max_retries=0)))
        events = list(run.submit())
        events += run.run_task("parser")
        events += run.run_task("validator")
        if dead_letter:
            events += run.claim("summarizer")
            events += run.fail("summarizer", error="down")
        else:
            events += run.run_task("summarizer")
            events += run.run_task("publisher")
        folded = RunView(RUN)
        for offset, event in enumerate(events):
            folded.apply(offset, event)
        folded.use_plan(run.plan)  # RunSubmitted names its plan by reference
        seeded = from_record(run_record(run.state))
        seeded.use_plan(run.plan)
        assert seeded.info() == folded.info()
        assert seeded.settled == folded.settled
        if not dead_letter:
            assert seeded.result() == folded.result() == {"publisher": {"publisher": "done"}}


def test_a_timeout_says_what_a_run_that_never_started_waits_for() -> None:
    # A run with a tenant and no dispatcher running waited silently: "still running after 60s".
    assert RunView("r1").stalled(60) == ("run r1 still pending after 60s (no orchestrator took the submit: "
                                         "is `taskplane processor run orchestrator` running?)")
    plain = fold(m.RunSubmitted("r1", PLAN, "{}", 10), m.TaskReady("r1", "fetch", 1))
    assert plain.stalled(60) == "run r1 still running after 60s (no task is running: is a worker of diamond running?)"
    tenant = fold(m.RunSubmitted("r1", PLAN, "{}", 10, tenant="acme"), m.TaskReady("r1", "fetch", 1))
    assert tenant.stalled(5) == ("run r1 still running after 5s (no task is running: is a worker of diamond "
                                 "and `taskplane processor run dispatcher` running?)")
    started = fold(m.RunSubmitted("r1", PLAN, "{}", 10), m.TaskReady("r1", "fetch", 1),
                   m.LeaseGranted("r1", "fetch", 1, "w1", 1, 10_000))
    assert started.stalled(60) == "run r1 still running after 60s"
