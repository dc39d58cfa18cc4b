"""Speculative follow-ons (workers/speculation.py) against the orchestrator's decider:
every child a worker starts ahead of its grant is the grant the decider makes."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.governance import PolicyPlan
from taskplane.contract.messages import (
    Assignment,
    ClaimTask,
    CommandRejected,
    CompleteTask,
    LeaseGranted,
    RunSucceeded,
    SubmitRun,
    TaskReady,
)
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.outputs import outputs
from taskplane.workers.speculation import Speculation
from tests.processors._decider_helpers import document_pipeline

RUN = "run-1"
W = "w1"


def _grant(runner: InMemoryRunner, event: LeaseGranted) -> Assignment:  # type: ignore[type-arg]
    """The Assignment the orchestrator sends for ``event`` (for a child started ahead: the
    one it would send, were the child not named by its parent's completion)."""
    [out] = [o for o in outputs(runner.states[RUN], replace(event, started_ahead=False)) if o.topic == "inbox"]
    assert isinstance(out.value, Assignment)
    return out.value


def _inbox(runner: InMemoryRunner, event: LeaseGranted) -> list[object]:  # type: ignore[type-arg]
    return [o for o in outputs(runner.states[RUN], event) if o.topic == "inbox"]


@st.composite
def _dags(draw: st.DrawFn) -> SystemPlan:
    n = draw(st.integers(1, 7))
    agents = []
    for i in range(n):
        deps = draw(st.sets(st.integers(0, i - 1), max_size=3)) if i else set()
        agents.append(AgentPlan(f"a{i}", None, (), tuple(f"a{d}" for d in sorted(deps))))
    return SystemPlan("dag", "v-test", tuple(agents), ExecutionPolicy())


@settings(max_examples=200, deadline=None)
@given(_dags(), st.data())
def test_every_child_started_ahead_is_the_deciders_grant_to_this_worker(plan: SystemPlan, data: st.DataObject) -> None:
    runner = InMemoryRunner.of(OrchestratorDecider())
    speculation = Speculation(plan, now_ms=lambda: 0)
    now = [1_000]

    def send(command: object) -> list[object]:
        now[0] += 1
        events = runner.handle(RUN, command, now[0])
        assert not [e for e in events if isinstance(e, CommandRejected)], events
        return events

    held: list[Assignment] = []  # running on this worker, by grant or ahead of it

    def take(events: list[object]) -> None:
        for event in events:
            if isinstance(event, TaskReady) and event.offered:  # through `work`: this worker claims it
                take(send(ClaimTask(RUN, event.task, event.attempt, W)))
            elif isinstance(event, LeaseGranted) and event.started_ahead:
                assert _inbox(runner, event) == []  # running here already: nothing sent
            elif isinstance(event, LeaseGranted):
                assert _inbox(runner, event)
                assignment = _grant(runner, event)
                if not speculation.granted(assignment):
                    held.append(assignment)

    take(send(SubmitRun(RUN, plan, '"in"')))
    ahead = 0
    while held:
        assignment = held.pop(data.draw(st.integers(0, len(held) - 1)))
        follow_on = data.draw(st.integers(0, len(plan.downstream(assignment.task)) + 1))
        completion = CompleteTask(RUN, assignment.task, W, assignment.epoch, f'"{assignment.task}"', follow_on)
        events, children = speculation.report(completion, assignment, send)
        granted = {e.task: e for e in events if isinstance(e, LeaseGranted)}
        assert {t for t, e in granted.items() if e.started_ahead} == {c.task for c in children}
        for child in children:  # decided by this completion: the same grant, the same Assignment
            event = granted[child.task]
            assert (event.worker_id, event.attempt, event.epoch, event.started_ahead) == (W, 1, 1, True)
            assert child == replace(_grant(runner, event), expires_ms=child.expires_ms)
        ahead += len(children)
        take(events)
        held.extend(children)
    assert runner.states[RUN].status.value == "succeeded"  # type: ignore[union-attr]
    assert ahead == speculation.started
    assert any(isinstance(e, RunSucceeded) for _k, e in runner.log)


def _diamond() -> tuple[SystemPlan, InMemoryRunner, Assignment]:  # type: ignore[type-arg]
    plan = document_pipeline()
    runner = InMemoryRunner.of(OrchestratorDecider())
    runner.handle(RUN, SubmitRun(RUN, plan, '"in"'), 1)
    [granted] = [e for e in runner.handle(RUN, ClaimTask(RUN, "parser", 1, W), 2) if isinstance(e, LeaseGranted)]
    return plan, runner, _grant(runner, granted)


def test_the_diamond_runs_ahead_to_the_end() -> None:
    plan, runner, parser = _diamond()
    speculation = Speculation(plan, now_ms=lambda: 0)
    _, children = speculation.report(CompleteTask(RUN, "parser", W, 1, '"p"', 2), parser, lambda c: None)
    assert [c.task for c in children] == ["validator", "summarizer"]
    assert all(c.dependency_outputs == {"parser": '"p"'} and c.input == '"in"' for c in children)
    validator, summarizer = children
    _, none = speculation.report(CompleteTask(RUN, "validator", W, 1, '"v"', 1), validator, lambda c: None)
    assert none == []  # the summarizer has not succeeded here yet
    _, [publisher] = speculation.report(CompleteTask(RUN, "summarizer", W, 1, '"s"', 1), summarizer, lambda c: None)
    assert publisher.dependency_outputs == {"validator": '"v"', "summarizer": '"s"'}
    assert speculation.granted(replace(publisher, expires_ms=99))
    assert not speculation.granted(publisher)  # once


def test_nothing_runs_ahead_without_room_for_every_child_a_policy_or_the_same_plan() -> None:
    plan, _runner, parser = _diamond()
    done = CompleteTask(RUN, "parser", W, 1, '"p"', 2)
    assert Speculation(plan).report(replace(done, follow_on=1), parser, lambda c: None)[1] == []
    assert Speculation(plan).report(done, replace(parser, plan_version="other"), lambda c: None)[1] == []
    assert Speculation(plan).report(done, replace(parser, plan_version=""), lambda c: None)[1] == []
    governed = replace(parser, policy=PolicyPlan())
    assert Speculation(plan).report(done, governed, lambda c: None)[1] == []
    assert len(Speculation(plan).report(done, parser, lambda c: None)[1]) == 2


def test_the_completion_is_written_before_the_children_are_known_started() -> None:
    plan, _runner, parser = _diamond()
    speculation = Speculation(plan)
    written: list[object] = []
    result, children = speculation.report(CompleteTask(RUN, "parser", W, 1, '"p"', 2), parser,
                                          lambda c: written.append(c) or "delivery")
    assert result == "delivery" and len(written) == 1 and len(children) == 2
    assert written[0] == CompleteTask(RUN, "parser", W, 1, '"p"', 2, started_ahead=("validator", "summarizer"))


def test_a_grant_an_older_orchestrator_still_sends_is_not_run_twice() -> None:
    plan, runner, parser = _diamond()
    speculation = Speculation(plan, now_ms=lambda: 0)
    old = CompleteTask(RUN, "parser", W, 1, '"p"', 2)  # what it reads: started_ahead unknown, ()
    events, children = speculation.report(old, parser, lambda c: runner.handle(RUN, replace(c, started_ahead=()), 3))
    grants = [e for e in events if isinstance(e, LeaseGranted)]
    assert [g.started_ahead for g in grants] == [False, False] and len(children) == 2
    assert all(speculation.granted(_grant(runner, g)) for g in grants)
