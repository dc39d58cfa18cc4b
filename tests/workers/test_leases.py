"""The lease renewer: a renewal every third of the lease until stopped; a failed send
is counted and renewal goes on. The tests wait for renewals, never for time."""

from __future__ import annotations

import threading

from taskplane.contract.messages import Assignment, RenewLease
from taskplane.workers.leases import LeaseRenewer


def _assignment(lease_ms: int) -> Assignment:
    return Assignment("w1", "run-1", "parser", 1, True, None, 4, 0, lease_ms, "sys", None, "{}", {}, ())


def test_the_renewer_sends_renewals_every_third_of_the_lease_until_stopped() -> None:
    sent: list[RenewLease] = []
    three = threading.Event()

    def send(renewal: RenewLease) -> None:
        sent.append(renewal)
        if len(sent) >= 3:
            three.set()

    renewer = LeaseRenewer(_assignment(300), send)
    assert abs(renewer.interval_s - 0.1) < 1e-9  # a third of the lease
    with renewer:
        assert three.wait(30), "no three renewals"
    count = len(sent)
    assert not renewer._thread.is_alive()  # stop() joined the thread: nothing can follow
    assert len(sent) == count == renewer.renewals
    assert set(sent) == {RenewLease("run-1", "parser", "w1", 4)}


def test_a_failing_send_is_counted_and_renewal_goes_on() -> None:
    calls: list[int] = []
    recovered = threading.Event()

    def flaky(_: RenewLease) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker hiccup")
        recovered.set()

    with LeaseRenewer(_assignment(150), flaky) as renewer:
        assert recovered.wait(30), "renewal did not go on after a failure"
    assert renewer.failures == 1 and renewer.renewals >= 1
