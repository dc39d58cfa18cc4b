"""Leases: grant, renewal, expiry by Tick, release, and fencing by epoch."""

from __future__ import annotations

import pytest

from taskplane.contract.messages import (
    AttemptFailed,
    CommandRejected,
    FailureKind,
    LeaseExpired,
    LeaseGranted,
    LeaseReleased,
    LeaseRenewed,
    RetryScheduled,
    TaskReady,
    Tick,
)
from taskplane.contract.state import TaskStatus
from tests.processors._decider_helpers import RUN, Driver, types


@pytest.fixture
def run() -> Driver:
    run = Driver()
    run.submit()
    return run


def test_claim_grants_a_lease_with_the_next_epoch(run: Driver) -> None:
    assert run.claim("parser", "w1") == [LeaseGranted(RUN, "parser", 1, "w1", 1, 11_000)]
    task = run.task("parser")
    assert (task.status, task.holder, task.epoch, task.lease_expires_ms) == (TaskStatus.LEASED, "w1", 1, 11_000)


def test_second_claim_is_rejected(run: Driver) -> None:
    run.claim("parser", "w1")
    [event] = run.claim("parser", "w2", attempt=1)
    assert event == CommandRejected(RUN, "ClaimTask", "parser", "w2", "already leased")
    assert run.task("parser").holder == "w1"


def test_claim_of_a_stale_attempt_is_rejected(run: Driver) -> None:
    run.claim("parser")
    run.fail("parser")
    run.retry_until_ready("parser")
    assert run.task("parser").attempt == 2
    [event] = run.claim("parser", "w2", attempt=1)
    assert isinstance(event, CommandRejected) and event.reason == "stale attempt 1 (current 2)"


def test_renewal_extends_the_lease_from_the_command_time(run: Driver) -> None:
    run.claim("parser")
    run.now += 4_000
    assert run.renew("parser") == [LeaseRenewed(RUN, "parser", 1, 15_000)]
    assert run.runner.decider.next_deadline(run.state) == 15_000


@pytest.mark.parametrize(("worker", "epoch", "reason"), [
    ("w1", 7, "stale epoch 7 (current 1)"),
    ("w2", 1, "not the lease holder"),
])
def test_renewal_from_a_stale_epoch_or_another_worker_is_rejected(
        run: Driver, worker: str, epoch: int, reason: str) -> None:
    run.claim("parser")
    [event] = run.renew("parser", worker, epoch)
    assert isinstance(event, CommandRejected) and event.reason == reason


def test_renewal_after_the_expiry_time_is_rejected(run: Driver) -> None:
    run.claim("parser")
    run.now += 10_000
    [event] = run.renew("parser")
    assert isinstance(event, CommandRejected) and event.reason == "lease expired"


def test_tick_expires_the_lease_and_schedules_a_counted_retry(run: Driver) -> None:
    run.claim("parser", "w1")
    assert run.advance(9_999) == []
    events = run.advance(1)
    assert types(events) == ["LeaseExpired", "AttemptFailed", "RetryScheduled"]
    assert events[0] == LeaseExpired(RUN, "parser", 1, "w1")
    assert events[1] == AttemptFailed(RUN, "parser", 1, 1, "lease expired", FailureKind.ERROR, True)
    retry = events[2]
    assert isinstance(retry, RetryScheduled) and retry.attempt == 2
    assert 900 <= retry.backoff_ms <= 1_100 and retry.due_ms == run.now + retry.backoff_ms
    task = run.task("parser")
    assert (task.status, task.failures, task.holder) == (TaskStatus.BACKOFF, 1, None)
    assert task.history[0].worker_id == "w1"


def test_the_expired_holder_is_fenced_and_the_next_worker_gets_a_higher_epoch(run: Driver) -> None:
    run.claim("parser", "w1")
    run.advance(10_000)
    run.retry_until_ready("parser")
    assert run.claim("parser", "w2")[0] == LeaseGranted(RUN, "parser", 2, "w2", 2, run.now + 10_000)
    for events in (run.complete("parser", "w1", epoch=1), run.renew("parser", "w1", epoch=1)):
        [event] = events
        assert isinstance(event, CommandRejected) and "stale epoch 1" in event.reason
    assert run.task("parser").holder == "w2"


def test_retry_due_tick_readies_the_next_attempt(run: Driver) -> None:
    run.claim("parser")
    run.fail("parser")
    due = run.task("parser").retry_due_ms
    assert due is not None and run.runner.decider.next_deadline(run.state) == due
    assert run.runner.handle(RUN, Tick(due - 1), due - 1) == []
    assert run.runner.handle(RUN, Tick(due), due) == [TaskReady(RUN, "parser", 2)]


def test_tick_with_nothing_due_changes_nothing(run: Driver) -> None:
    before = run.state
    assert run.send(Tick(run.now)) == []
    assert run.state is before
    assert run.runner.decider.next_deadline(run.state) is None


def test_release_readies_the_same_attempt_without_a_failure(run: Driver) -> None:
    run.claim("parser", "w1")
    assert run.release("parser", "w1") == [LeaseReleased(RUN, "parser", 1, "w1"), TaskReady(RUN, "parser", 1)]
    task = run.task("parser")
    assert (task.status, task.failures, task.history) == (TaskStatus.READY, 0, ())
    assert run.claim("parser", "w2")[0] == LeaseGranted(RUN, "parser", 1, "w2", 2, run.now + 10_000)


def test_release_by_another_worker_is_rejected(run: Driver) -> None:
    run.claim("parser", "w1")
    [event] = run.release("parser", "w2")
    assert isinstance(event, CommandRejected) and event.reason == "not the lease holder"


def test_completion_after_expiry_time_but_before_the_tick_is_accepted(run: Driver) -> None:
    # The log has not decided the expiry yet and nobody else holds the task.
    run.claim("parser")
    run.now += 60_000
    assert types(run.complete("parser")) == ["TaskSucceeded", "TaskReady", "TaskReady"]


def test_completion_after_the_lease_expired_is_rejected(run: Driver) -> None:
    run.claim("parser", "w1")
    run.advance(10_000)
    [event] = run.complete("parser", "w1", epoch=1)
    assert isinstance(event, CommandRejected) and event.reason == "not leased (task is backoff)"
