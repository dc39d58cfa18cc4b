"""The budget rules of the orchestrator (processors/orchestrator/budget.py): usage folded
per run and task from the outcome commands, a run stopped with budget_exceeded when its
usage reaches its budget, the holders told, no hot-path work without a policy."""

from __future__ import annotations

from dataclasses import replace

from taskplane.contract.governance import BUDGET_EXCEEDED, STOPPED_NOTICE, PolicyPlan, Usage
from taskplane.contract.messages import (
    Assignment,
    CompleteTask,
    FailTask,
    FailureKind,
    RecordToolCall,
    RunFailed,
)
from taskplane.contract.state import RunStatus, TaskStatus
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.processors.orchestrator.outputs import outputs
from tests.processors._decider_helpers import TOOLS, Driver, document_pipeline, types


def _driver(policy: PolicyPlan | None) -> Driver:
    driver = Driver(plan=replace(document_pipeline(), policy=policy))
    driver.submit()
    return driver


def _record(driver: Driver, task: str, index: int, tokens: int, cost: int = 0, worker: str = "w1") -> list:
    return driver.send(RecordToolCall(driver.run_id, task, worker, driver.task(task).epoch, f"{task}/{index}",
                                      TOOLS[task], index, True, "{}", None, (Usage("m", tokens, cost),)))


def test_usage_is_folded_per_run_and_task_without_a_policy() -> None:
    driver = _driver(None)
    driver.claim("parser")
    events = _record(driver, "parser", 0, 40, 1_500)
    assert events[0].usage == (Usage("m", 40, 1_500),)
    driver.send(CompleteTask(driver.run_id, "parser", "w1", driver.task("parser").epoch, "{}", 0,
                             (Usage("m", 2, 10),)))
    assert (driver.state.tokens, driver.state.cost_micros) == (42, 1_510)
    assert (driver.task("parser").tokens, driver.task("parser").cost_micros) == (42, 1_510)
    assert driver.state.status is RunStatus.RUNNING  # no policy: no budget


def test_a_run_stops_when_its_usage_reaches_the_budget_and_the_holders_are_told() -> None:
    driver = _driver(PolicyPlan(max_tokens=100))
    driver.run_task("parser")
    driver.claim("validator", "w1")
    driver.claim("summarizer", "w2")
    assert types(_record(driver, "validator", 0, 60)) == ["ToolCallSucceeded"]
    events = _record(driver, "summarizer", 0, 40, worker="w2")
    assert types(events) == ["ToolCallSucceeded", "RunFailed"]
    stop = events[-1]
    assert isinstance(stop, RunFailed)
    assert (stop.reason, stop.tokens, stop.holders) == (BUDGET_EXCEEDED, 100, ("w1", "w2"))
    assert driver.state.status is RunStatus.FAILED and driver.state.reason == BUDGET_EXCEEDED
    notices = [o for o in outputs(driver.state, stop) if o.topic == "inbox"]
    assert sorted(o.key for o in notices) == ["w1", "w2"]
    assert all(isinstance(o.value, Assignment) and not o.value.granted
               and (o.value.reason or "").startswith(STOPPED_NOTICE) for o in notices)


def test_the_cost_budget_counts_micro_units() -> None:
    driver = _driver(PolicyPlan(max_cost_micros=1_000_000))
    driver.claim("parser")
    assert types(_record(driver, "parser", 0, 0, 999_999)) == ["ToolCallSucceeded"]
    assert types(_record(driver, "parser", 1, 0, 1)) == ["ToolCallSucceeded", "RunFailed"]


def test_a_refused_call_fails_the_run_not_a_retry_or_a_dead_letter() -> None:
    driver = _driver(PolicyPlan(max_tokens=10))
    driver.claim("parser")
    events = driver.send(FailTask(driver.run_id, "parser", "w1", driver.task("parser").epoch,
                                  "budget_exceeded: no budget left", FailureKind.NON_RETRYABLE, 0,
                                  (Usage("", 10, 0),)))
    assert types(events) == ["AttemptFailed", "RunFailed"]
    assert driver.task("parser").status is TaskStatus.FAILED


def test_a_completion_over_budget_readies_nothing_but_the_last_one_succeeds() -> None:
    driver = _driver(PolicyPlan(max_tokens=10))
    driver.claim("parser")
    events = driver.send(CompleteTask(driver.run_id, "parser", "w1", driver.task("parser").epoch, "{}", 0,
                                      (Usage("", 10, 0),)))
    assert types(events) == ["TaskSucceeded", "RunFailed"]
    last = _driver(PolicyPlan(max_tokens=10))
    for task in ("parser", "validator", "summarizer"):
        last.run_task(task)
    last.claim("publisher")
    events = last.send(CompleteTask(last.run_id, "publisher", "w1", last.task("publisher").epoch, "{}", 0,
                                    (Usage("", 50, 0),)))
    assert types(events) == ["TaskSucceeded", "RunSucceeded"]  # nothing left to stop


def test_blocked_and_model_refusals_fail_non_retryable() -> None:
    driver = _driver(PolicyPlan(blocked_tools=("document.extract",)))
    driver.claim("parser")
    events = driver.fail("parser", kind=FailureKind.NON_RETRYABLE, error="tool_blocked: blocked by policy")
    assert types(events) == ["AttemptFailed", "TaskDeadLettered", "TaskBlocked", "TaskBlocked", "TaskBlocked"]


def test_the_grant_carries_the_policy_and_the_run_usage_so_far() -> None:
    policy = PolicyPlan(max_tokens=100, allowed_models=("gpt-4",))
    driver = _driver(policy)
    driver.claim("parser")
    _record(driver, "parser", 0, 30, 7)
    driver.complete("parser")
    driver.runner.outputs.clear()
    driver.claim("validator")
    (grant,) = [o.value for o in driver.runner.outputs if o.topic == "inbox"]
    assert (grant.policy, grant.run_tokens, grant.run_cost_micros) == (policy, 30, 7)


def test_rebuilding_from_the_log_gives_the_same_usage_and_stop() -> None:
    driver = _driver(PolicyPlan(max_tokens=50))
    driver.claim("parser")
    _record(driver, "parser", 0, 30)
    _record(driver, "parser", 1, 30)
    decider = driver.runner.decider
    assert isinstance(decider, OrchestratorDecider)
    state = None
    for _key, event in driver.runner.log:
        state = decider.evolve(state, event)
    assert state is not None
    assert (state.tokens, state.status, state.reason) == (60, RunStatus.FAILED, BUDGET_EXCEEDED)


def test_every_record_of_a_budgeted_run_is_answered_with_the_run_usage() -> None:
    driver = _driver(PolicyPlan(max_tokens=1_000))
    driver.claim("parser")
    driver.runner.outputs.clear()
    _record(driver, "parser", 0, 30)
    _record(driver, "parser", 0, 30)  # the same key again: refused as a duplicate, still answered
    answers = [o.value for o in driver.runner.outputs if o.topic == "inbox"]
    assert [(a.reason, a.epoch, a.run_tokens) for a in answers] == [("run usage", 1, 30), ("run usage", 1, 30)]
    driver.cancel()
    driver.runner.outputs.clear()
    _record(driver, "parser", 1, 30)
    (notice,) = [o.value for o in driver.runner.outputs if o.topic == "inbox"]
    assert (notice.reason or "").startswith(STOPPED_NOTICE)


def test_no_answers_without_a_budget() -> None:
    driver = _driver(PolicyPlan(blocked_tools=("x",)))
    driver.claim("parser")
    driver.runner.outputs.clear()
    _record(driver, "parser", 0, 30)
    assert [o for o in driver.runner.outputs if o.topic == "inbox"] == []
