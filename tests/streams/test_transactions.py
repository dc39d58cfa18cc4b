"""The rule for failed transactional calls, and calls with deadlines (no broker)."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import KafkaError, KafkaException

from taskplane.streams.transactions import (
    DeadlineCaller,
    Recovery,
    TransactionWedged,
    call_retrying,
    recovery_for,
)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (KafkaException(KafkaError(KafkaError.PRODUCER_FENCED, fatal=True)), Recovery.FENCED),
        (KafkaException(KafkaError(KafkaError._FENCED, fatal=True)), Recovery.FENCED),
        (KafkaException(KafkaError(KafkaError.INVALID_PRODUCER_EPOCH, fatal=True)), Recovery.RECREATE),
        (KafkaException(KafkaError(KafkaError._TIMED_OUT, retriable=True)), Recovery.ABORT),
        (KafkaException(KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, txn_requires_abort=True)),
         Recovery.ABORT),
        (TransactionWedged("send_offsets_to_transaction did not return"), Recovery.RECREATE),
    ],
)
def test_failed_calls_abort_recreate_or_stop_by_kafkas_rules(error: BaseException, expected: Recovery) -> None:
    assert recovery_for(error) is expected


def test_a_call_returns_its_value_or_raises_its_error() -> None:
    calls = DeadlineCaller("test")
    assert calls.call("add", lambda: 1 + 1, 5) == 2
    with pytest.raises(KafkaException):
        calls.call("fail", lambda: (_ for _ in ()).throw(KafkaException(KafkaError(KafkaError._TIMED_OUT))), 5)
    calls.close()


def test_a_call_past_its_deadline_is_abandoned_and_the_next_one_runs_on_a_fresh_thread() -> None:
    calls = DeadlineCaller("test")
    release = threading.Event()
    blocked: list[threading.Thread] = []

    def hang() -> None:  # like a librdkafka call that ignores its timeout
        blocked.append(threading.current_thread())
        release.wait()

    with pytest.raises(TransactionWedged):
        calls.call("hang", hang, 0.05)
    assert calls.abandoned == 1
    assert calls.call("next", threading.current_thread, 5) is not blocked[0]
    release.set()
    calls.close()


def test_a_late_call_is_waited_for_with_patience_and_keeps_its_result() -> None:
    """init_transactions past its deadline is not abandoned at once: a second producer
    would race the first one's InitProducerId. A late result still counts."""
    calls = DeadlineCaller("test")
    release = threading.Timer(0.3, lambda: None)
    release.start()
    assert calls.call("late", lambda: (release.join(), "done")[1], 0.05, patience_s=5) == "done"
    assert calls.abandoned == 0
    calls.close()


def test_patience_ends_at_its_bound_or_when_stopped() -> None:
    calls = DeadlineCaller("test")
    release, stop = threading.Event(), threading.Event()
    with pytest.raises(TransactionWedged):
        calls.call("hang", release.wait, 0.05, patience_s=0.3)
    stop.set()
    with pytest.raises(TransactionWedged):  # stopped: not the 60 s of patience
        calls.call("hang", release.wait, 0.05, patience_s=60, stop=stop)
    assert calls.abandoned == 2
    release.set()
    calls.close()


def _failing(errors: list[KafkaError]) -> tuple[list[int], object]:
    """A call that raises ``errors`` in turn, then returns."""
    calls: list[int] = []

    def call() -> None:
        calls.append(1)
        if len(calls) <= len(errors):
            raise KafkaException(errors[len(calls) - 1])

    return calls, call


def test_a_retriable_failure_is_retried_until_the_call_goes_through() -> None:
    """A leader or coordinator on a dead node: the call fails with a retriable error
    until the controller moved it, then goes through on the same producer."""
    transport = KafkaError(KafkaError._TRANSPORT, retriable=True)
    calls, call = _failing([transport, KafkaError(KafkaError._TIMED_OUT, retriable=True)])
    deadlines = DeadlineCaller("test")
    assert call_retrying(deadlines, "send_offsets_to_transaction", call, 5, threading.Event()) > 0
    assert len(calls) == 3
    ok_calls, ok = _failing([])
    assert call_retrying(deadlines, "commit_transaction", ok, 5, threading.Event()) == 0.0
    deadlines.close()


@pytest.mark.parametrize("error", [
    KafkaError(KafkaError.COORDINATOR_NOT_AVAILABLE, retriable=True, txn_requires_abort=True),
    KafkaError(KafkaError.INVALID_TXN_STATE, fatal=True),
    KafkaError(KafkaError.UNKNOWN_MEMBER_ID),
], ids=["abortable", "fatal", "not-retriable"])
def test_a_failure_that_asks_for_more_than_a_retry_is_raised_at_once(error: KafkaError) -> None:
    calls, call = _failing([error])
    deadlines = DeadlineCaller("test")
    with pytest.raises(KafkaException):
        call_retrying(deadlines, "commit_transaction", call, 5, threading.Event())
    assert len(calls) == 1
    deadlines.close()


def test_retries_end_after_the_call_timeout_or_when_stopped() -> None:
    retriable = KafkaError(KafkaError._TIMED_OUT, retriable=True)
    calls, call = _failing([retriable] * 1000)
    deadlines = DeadlineCaller("test")
    with pytest.raises(KafkaException):
        call_retrying(deadlines, "commit_transaction", call, 0.3, threading.Event())
    assert 2 <= len(calls) < 1000
    stop = threading.Event()
    stop.set()
    stopped, call = _failing([retriable] * 1000)
    with pytest.raises(KafkaException):
        call_retrying(deadlines, "commit_transaction", call, 60, stop)
    assert len(stopped) == 1
    deadlines.close()


def test_a_slow_call_tells_on_slow_while_it_runs_and_a_quick_one_does_not() -> None:
    """The runtime asks for fresh metadata only while a transactional call is slow (a
    leader or coordinator moved): quick calls send nothing extra."""
    told: list[float] = []
    calls = DeadlineCaller("test", on_slow=lambda: told.append(time.monotonic()))
    assert calls.call("quick", lambda: 1, 5) == 1
    assert told == []
    def slow() -> int:
        time.sleep(0.8)
        return 2

    assert calls.call("slow", slow, 5) == 2
    assert 2 <= len(told) <= 4, told
    calls.close()



def test_a_call_is_given_up_before_its_deadline_once_give_up_says_so() -> None:
    """A commit call blocked on a node that left the cluster is abandoned soon after, not
    at its whole bound (streams/metadata_nudge.py)."""
    calls = DeadlineCaller("test")
    release = threading.Event()
    lost_at = time.monotonic() + 0.3
    with pytest.raises(TransactionWedged):
        calls.call("send_offsets_to_transaction", release.wait, 60, give_up=lambda: time.monotonic() > lost_at)
    assert calls.abandoned == 1
    release.set()
    calls.close()
