"""Failures: the retry rule, breaker-open retries, dead letters, blocking, replay and
runs that fail without a dead-letter transition."""

from __future__ import annotations

from taskplane.contract.messages import (
    AttemptFailed,
    AttemptRecord,
    CommandRejected,
    DeadLetterRecord,
    Event,
    FailureKind,
    RetryScheduled,
    RunFailed,
    TaskBlocked,
    TaskDeadLettered,
    TaskReady,
    TaskReplayed,
)
from taskplane.contract.plan import AgentPlan, ExecutionPolicy, SystemPlan
from taskplane.contract.state import RunStatus, TaskStatus
from taskplane.processors.orchestrator.backoff import backoff_ms
from tests.processors._decider_helpers import RUN, Driver, document_pipeline, types


def started(policy: ExecutionPolicy | None = None) -> Driver:
    run = Driver(document_pipeline(policy))
    run.submit()
    return run


def fail_until_dead(run: Driver, task: str) -> list[Event]:
    """Claim and fail ``task`` until its retries are exhausted; the last events."""
    while True:
        run.claim(task, f"w{run.task(task).attempt}")
        events = run.fail(task, f"w{run.task(task).attempt}", error=f"boom {run.task(task).attempt}")
        if types(events)[-1] != "RetryScheduled":
            return events
        run.retry_until_ready(task)


def test_error_schedules_attempt_plus_one_after_the_backoff() -> None:
    run = started()
    run.claim("parser")
    run.now = 5_000
    events = run.fail("parser")
    delay = backoff_ms(run.plan.execution, RUN, "parser", 1)
    assert events == [
        AttemptFailed(RUN, "parser", 1, 1, "boom", FailureKind.ERROR, True),
        RetryScheduled(RUN, "parser", 2, 5_000 + delay, delay),
    ]
    assert run.task("parser").history == (AttemptRecord(1, 1, "w1", "boom"),)


def test_second_failure_uses_the_second_backoff() -> None:
    run = started()
    run.claim("parser")
    run.fail("parser")
    run.retry_until_ready("parser")
    run.claim("parser")
    retry = run.fail("parser")[-1]
    assert isinstance(retry, RetryScheduled)
    assert retry.backoff_ms == backoff_ms(run.plan.execution, RUN, "parser", 2)
    assert 1_800 <= retry.backoff_ms <= 2_200 and retry.attempt == 3


def test_max_retries_three_dead_letters_on_the_third_counted_failure() -> None:
    run = started(ExecutionPolicy(max_retries=3))
    run.run_task("parser")
    events = fail_until_dead(run, "validator")
    assert types(events) == ["AttemptFailed", "TaskDeadLettered", "TaskBlocked"]
    assert events[1] == TaskDeadLettered(RUN, "validator", 3, "boom 3", run.now)
    assert events[2] == TaskBlocked(RUN, "publisher", "validator")
    task = run.task("validator")
    assert (task.status, task.failures, len(task.history)) == (TaskStatus.DEAD_LETTERED, 3, 3)
    # the rest of the run goes on; the blocked task waits
    assert run.task("summarizer").status is TaskStatus.READY
    assert types(run.run_task("summarizer")) == ["TaskSucceeded"]
    assert run.task("publisher").status is TaskStatus.BLOCKED
    assert run.state.status is RunStatus.RUNNING


def test_non_retryable_dead_letters_at_once_and_blocks_all_downstream() -> None:
    run = started()
    run.claim("parser")
    events = run.fail("parser", kind=FailureKind.NON_RETRYABLE)
    assert types(events) == ["AttemptFailed", "TaskDeadLettered", "TaskBlocked", "TaskBlocked", "TaskBlocked"]
    assert {e.task for e in events[2:]} == {"validator", "summarizer", "publisher"}  # type: ignore[union-attr]
    assert run.runner.decider.next_deadline(run.state) is None  # waiting for an operator


def test_max_retries_zero_dead_letters_on_the_first_failure() -> None:
    run = started(ExecutionPolicy(max_retries=0))
    run.claim("parser")
    assert types(run.fail("parser"))[1] == "TaskDeadLettered"


def test_breaker_open_keeps_the_budget_and_waits_for_retry_after() -> None:
    run = started(ExecutionPolicy(max_retries=1))
    run.claim("parser")
    events = run.fail("parser", kind=FailureKind.BREAKER_OPEN, retry_after_ms=45_000)
    assert events[0] == AttemptFailed(RUN, "parser", 1, 1, "boom", FailureKind.BREAKER_OPEN, False)
    assert events[1] == RetryScheduled(RUN, "parser", 2, run.now + 45_000, 45_000)
    assert run.task("parser").failures == 0
    assert len(run.task("parser").history) == 1


def test_breaker_open_waits_at_least_the_backoff() -> None:
    run = started()
    run.claim("parser")
    retry = run.fail("parser", kind=FailureKind.BREAKER_OPEN, retry_after_ms=0)[-1]
    assert isinstance(retry, RetryScheduled)
    assert retry.backoff_ms == backoff_ms(run.plan.execution, RUN, "parser", 1)


def test_without_dead_letter_transition_the_run_fails() -> None:
    run = started(ExecutionPolicy(max_retries=1, dead_letter_transition=False))
    run.claim("parser")
    events = run.fail("parser", error="disk full")
    assert events[-1] == RunFailed(RUN, "task parser failed: disk full", run.now)
    assert run.state.status is RunStatus.FAILED
    assert {t.status for t in run.state.tasks.values()} == {TaskStatus.FAILED}
    [event] = run.replay("parser")
    assert isinstance(event, CommandRejected) and event.reason == "run already failed"


def test_dead_letter_record_carries_every_attempt_and_the_journal() -> None:
    run = started(ExecutionPolicy(max_retries=2))
    run.claim("parser")
    run.record("parser", 0)
    run.fail("parser")
    run.retry_until_ready("parser")
    run.claim("parser", "w2")
    run.fail("parser", "w2", error="still broken")
    [record] = [o for o in run.runner.outputs if o.topic == "deadletter"]
    assert record.key == RUN
    value = record.value
    assert isinstance(value, DeadLetterRecord)
    assert value.attempts == (AttemptRecord(1, 1, "w1", "boom"), AttemptRecord(2, 2, "w2", "still broken"))
    assert [entry.key for entry in value.journal] == ["parser/document.extract/0"]
    assert (value.system, value.task, value.error) == ("document-pipeline", "parser", "still broken")


def test_replay_resumes_with_a_fresh_budget_and_keeps_the_journal() -> None:
    run = started(ExecutionPolicy(max_retries=1))
    run.claim("parser")
    run.record("parser", 0)
    run.fail("parser")
    events = run.replay("parser")
    assert events == [TaskReplayed(RUN, "parser", 2, "operator"), TaskReady(RUN, "parser", 2)]
    task = run.task("parser")
    assert (task.status, task.failures, task.attempt) == (TaskStatus.READY, 0, 2)
    assert "parser/document.extract/0" in run.state.journal
    # downstream waits for the dependency again instead of being blocked
    assert {run.task(t).status for t in ("validator", "summarizer", "publisher")} == {TaskStatus.PENDING}
    assert types(run.run_task("parser"))[1:] == ["TaskReady", "TaskReady"]


def test_full_runbook_dead_letter_replay_and_success() -> None:
    run = started()
    run.run_task("parser")
    fail_until_dead(run, "summarizer")
    run.run_task("validator")
    assert run.task("publisher").status is TaskStatus.BLOCKED
    run.replay("summarizer")
    assert run.task("publisher").status is TaskStatus.PENDING
    run.run_task("summarizer")
    assert types(run.run_task("publisher")) == ["TaskSucceeded", "RunSucceeded"]


def test_replay_keeps_a_task_blocked_by_another_dead_letter() -> None:
    run = started(ExecutionPolicy(max_retries=1))
    run.run_task("parser")
    run.claim("validator")
    run.fail("validator")
    run.claim("summarizer")
    run.fail("summarizer")
    assert run.task("publisher").blocked_by == "validator"
    run.replay("validator")
    publisher = run.task("publisher")
    assert (publisher.status, publisher.blocked_by) == (TaskStatus.BLOCKED, "summarizer")


def test_replay_of_a_task_that_is_not_dead_lettered_is_rejected() -> None:
    run = started()
    [event] = run.replay("parser")
    assert isinstance(event, CommandRejected) and event.reason == "not dead-lettered (task is ready)"


def test_transitive_downstream_is_blocked() -> None:
    agents = (AgentPlan("a", None, (), ()), AgentPlan("b", None, (), ("a",)), AgentPlan("c", None, (), ("b",)))
    chain = SystemPlan("chain", "v1", agents, ExecutionPolicy(max_retries=1))
    run = Driver(chain)
    run.submit()
    run.claim("a")
    events = run.fail("a")
    assert [e for e in events if isinstance(e, TaskBlocked)] == [TaskBlocked(RUN, "b", "a"),
                                                                  TaskBlocked(RUN, "c", "a")]


def test_fail_from_a_non_holder_is_rejected_and_counts_nothing() -> None:
    run = started()
    run.claim("parser", "w1")
    [event] = run.fail("parser", "w2")
    assert isinstance(event, CommandRejected) and event.reason == "not the lease holder"
    assert run.task("parser").failures == 0 and run.task("parser").status is TaskStatus.LEASED
