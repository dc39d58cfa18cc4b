"""Event logs for the status conformance suite, written by the real decider: command
sequences run through ``InMemoryRunner`` (the named scenarios, and a hypothesis strategy
of random sequences over random DAGs)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import CompleteTask, Event, FailureKind
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.contract.state import RunState
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.hints import OrchestratorHints
from taskplane.processors.orchestrator.spare import SpareSlots
from tests.processors._approval_helpers import (
    approval_denied,
    approval_expired,
    approval_granted,
    approval_pending,
)
from tests.processors._decider_helpers import Driver, document_pipeline


@dataclass(frozen=True)
class Log:
    """One run's events as the decider wrote them, with the plan they reference and the
    state the decider itself holds after them (what every fold must agree with)."""

    name: str
    plan: SystemPlan
    events: tuple[Event, ...]
    state: RunState


def recorded(name: str, driver: Driver) -> Log:
    assert not driver.runner.failures, driver.runner.failures
    events = tuple(event for key, event in driver.runner.log if key == driver.run_id)
    return Log(name, driver.plan, events, driver.state)


def _finish(run: Driver, *tasks: str) -> None:
    for task in tasks:
        if run.task(task).status.value == "ready":
            run.claim(task)
        run.complete(task, run.task(task).holder or "w1")


def happy_path() -> Driver:
    run = Driver()
    run.submit()
    for task in ("parser", "validator", "summarizer", "publisher"):
        run.run_task(task)
    return run


def retries() -> Driver:
    run = Driver()
    run.submit()
    run.claim("parser")
    run.fail("parser")
    run.retry_until_ready("parser")
    run.claim("parser", "w2")
    run.fail("parser", "w2", kind=FailureKind.BREAKER_OPEN, retry_after_ms=3_000)
    run.retry_until_ready("parser")
    _finish(run, "parser", "validator", "summarizer", "publisher")
    return run


def lease_expiry() -> Driver:
    run = Driver()
    run.submit()
    run.claim("parser")
    run.renew("parser")
    run.advance(run.plan.execution.lease_timeout_ms + 1)  # expired: AttemptFailed, RetryScheduled
    run.retry_until_ready("parser")
    run.claim("parser", "w2")
    run.complete("parser", "w2")
    return run


def _dead_letter(run: Driver, task: str, worker: str = "w1") -> None:
    """Fail ``task`` until it is dead-lettered (the default policy: 3 tries)."""
    while run.task(task).status.value != "dead_lettered":
        if run.task(task).status.value == "backoff":
            run.retry_until_ready(task)
        run.claim(task, worker)
        run.fail(task, worker)


def dead_letter_and_replay() -> Driver:
    run = Driver()
    run.submit()
    run.run_task("parser")
    run.run_task("validator")
    _dead_letter(run, "summarizer")  # blocks the publisher
    run.replay("summarizer")
    _finish(run, "summarizer", "publisher")
    return run


def blocked_downstream() -> Driver:
    """Two dead letters block the publisher; replaying one leaves it blocked by the other."""
    run = Driver()
    run.submit()
    run.run_task("parser")
    _dead_letter(run, "validator")
    _dead_letter(run, "summarizer", "w2")
    run.replay("validator")
    return run


def cancel_after_failure() -> Driver:
    """AttemptFailed then RunCancelled: once the client said ``a=failed, b=waiting``."""
    run = Driver()
    run.submit()
    run.claim("parser")
    run.fail("parser")
    run.cancel()
    return run


def cancel_while_leased() -> Driver:
    run = Driver()
    run.submit()
    run.run_task("parser")
    run.claim("validator")
    run.claim("summarizer", "w2")
    run.complete("summarizer", "w2")
    run.cancel("operator stopped it")
    return run


def run_failed_without_dead_letters() -> Driver:
    run = Driver(document_pipeline(ExecutionPolicy(max_retries=1, dead_letter_transition=False)))
    run.submit()
    run.run_task("parser")
    run.claim("summarizer")
    run.claim("validator", "w2")
    run.fail("validator", "w2", kind=FailureKind.NON_RETRYABLE)
    return run


def root_and_follow_on_grants() -> Driver:
    """Tasks granted in the decision that readied them (``TaskReady(offered=False)``
    then ``LeaseGranted``): a run's root at submit, and downstream at a completion."""
    decider = OrchestratorDecider()
    first = Driver(runner=InMemoryRunner.of(decider, hints=lambda: OrchestratorHints(decider.plans, SpareSlots())))
    first.submit()
    _finish(first, "parser", "validator", "summarizer")
    first.send(CompleteTask(first.run_id, "publisher", "w1", 0, '"ok"', 0))  # rejected: not leased
    first.claim("publisher")
    first.send(CompleteTask(first.run_id, "publisher", "w1", first.task("publisher").epoch, '"ok"', 3))
    run = Driver(run_id="run-2", now=first.now + 10, runner=first.runner)
    run.submit()  # the parser is granted to w1 at once
    run.send(CompleteTask(run.run_id, "parser", "w1", run.task("parser").epoch, '"p"', 2))
    run.fail("summarizer")
    return run


SCENARIOS: dict[str, Callable[[], Driver]] = {
    "happy path": happy_path,
    "retries": retries,
    "lease expiry": lease_expiry,
    "dead letter and replay": dead_letter_and_replay,
    "blocked downstream": blocked_downstream,
    "cancel after a failure": cancel_after_failure,
    "cancel while leased": cancel_while_leased,
    "run failed without dead letters": run_failed_without_dead_letters,
    "root and follow-on grants": root_and_follow_on_grants,
    "approval pending": approval_pending,
    "approval granted": approval_granted,
    "approval denied": approval_denied,
    "approval expired": approval_expired,
}

# ------------------------------------------------------------------ random logs


@st.composite
def plans(draw: st.DrawFn) -> SystemPlan:
    """A DAG of 1-6 agents, each depending on a few earlier ones, with a drawn policy."""
    count = draw(st.integers(1, 6))
    agents = []
    for index in range(count):
        deps = draw(st.sets(st.integers(0, index - 1), max_size=3)) if index else set()
        agents.append(AgentPlan(f"t{index}", None, (), tuple(f"t{d}" for d in sorted(deps))))
    policy = ExecutionPolicy(max_retries=draw(st.integers(1, 3)), dead_letter_transition=draw(st.booleans()),
                             lease_timeout_ms=5_000, initial_backoff_ms=100)
    return SystemPlan("random", "v1", tuple(agents), policy)


ACTIONS = st.tuples(
    st.sampled_from(["claim", "claim", "complete", "complete", "fail", "fail", "renew", "release",
                     "advance", "replay", "cancel"]),
    st.integers(0, 5),  # which task
    st.sampled_from([0, 0, 1, 2]),  # follow-on slots, or a failure kind
    st.sampled_from([1, 200, 1_000, 6_000]),  # ms the log's time moves
)


@st.composite
def random_logs(draw: st.DrawFn) -> Log:
    plan = draw(plans())
    run = Driver(plan, runner=InMemoryRunner.of(OrchestratorDecider()))
    run.submit()
    names = [agent.name for agent in plan.agents]
    kinds = [FailureKind.ERROR, FailureKind.BREAKER_OPEN, FailureKind.NON_RETRYABLE]
    for action, which, extra, ms in draw(st.lists(ACTIONS, max_size=40)):
        task = names[which % len(names)]
        holder = run.task(task).holder or "w1"
        run.now += ms
        match action:
            case "claim":
                run.claim(task, f"w{extra}")
            case "complete":
                run.send(CompleteTask(run.run_id, task, holder, run.task(task).epoch, '"ok"', extra))
            case "fail":
                run.fail(task, holder, kinds[extra % 3], retry_after_ms=ms)
            case "renew":
                run.renew(task, holder)
            case "release":
                run.release(task, holder)
            case "advance":
                run.runner.advance(run.now)
            case "replay":
                run.replay(task)
            case "cancel":
                run.cancel()
    return recorded("random", run)
