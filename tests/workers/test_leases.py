"""Lease renewals: one scheduler renews every held lease each third of its lease until
released; a failed send, or a renewal the broker refused, is counted and renewal goes
on. The tests wait for renewals, never for time."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from taskplane.contract.messages import Assignment, RenewLease
from taskplane.workers.leases import Renewals


def _assignment(lease_ms: int, task: str = "parser", epoch: int = 4) -> Assignment:
    return Assignment("w1", "run-1", task, 1, True, None, epoch, 0, lease_ms, "sys", None, "{}", {}, ())


@dataclass
class Sent:
    failure: str | None = None


class Recorder:
    def __init__(self, wanted: int) -> None:
        self.sent: list[RenewLease] = []
        self.enough = threading.Event()
        self.wanted = wanted

    def __call__(self, renewal: RenewLease) -> Sent:
        self.sent.append(renewal)
        if len(self.sent) >= self.wanted:
            self.enough.set()
        return Sent()


def test_a_held_lease_is_renewed_every_third_of_it_and_never_after_its_release() -> None:
    send = Recorder(3)
    renewals = Renewals(send)
    try:
        with renewals.held(_assignment(300)) as lease:
            assert abs(lease.interval_s - 0.1) < 1e-9  # a third of the lease
            assert send.enough.wait(30), "no three renewals"
        count = len(send.sent)
        assert count == lease.renewals
        assert set(send.sent) == {RenewLease("run-1", "parser", "w1", 4)}
        with renewals.held(_assignment(300, "other")):  # the scheduler goes on for other leases...
            send.wanted, send.enough = count + 2, threading.Event()
            assert send.enough.wait(30)
        assert RenewLease("run-1", "parser", "w1", 4) not in send.sent[count:]  # ...without the released one
    finally:
        renewals.close()


def test_leases_are_renewed_side_by_side_each_on_its_own_schedule() -> None:
    send = Recorder(12)
    renewals = Renewals(send)
    try:
        with renewals.held(_assignment(90, "fast")), renewals.held(_assignment(900, "slow")):
            assert send.enough.wait(30)
        by_task = Counter(r.task for r in send.sent)
        assert by_task["fast"] >= 9 and by_task["slow"] <= 2  # 30 ms vs 300 ms intervals
    finally:
        renewals.close()


def test_a_failing_send_and_a_refused_renewal_are_counted_and_renewal_goes_on() -> None:
    calls: list[int] = []
    recovered = threading.Event()

    def flaky(_: RenewLease) -> Sent:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("queue full")
        if len(calls) == 2:
            return Sent("Local: Message timed out")  # known as refused at the lease's next turn
        if len(calls) >= 4:
            recovered.set()
        return Sent()

    renewals = Renewals(flaky)
    try:
        with renewals.held(_assignment(150)) as lease:
            assert recovered.wait(30), "renewal did not go on after failures"
        assert lease.failures == 2 and lease.renewals >= 3
    finally:
        renewals.close()


def test_close_stops_the_scheduler() -> None:
    renewals = Renewals(Recorder(1))
    renewals.close()
    assert not renewals._thread.is_alive()
