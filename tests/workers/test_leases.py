from __future__ import annotations

import time

from taskplane.contract.messages import Assignment, RenewLease
from taskplane.workers.leases import LeaseRenewer


def test_the_renewer_sends_renewals_every_third_of_the_lease_until_stopped() -> None:
    assignment = Assignment("w1", "run-1", "parser", 1, True, None, 4, 0, 300, "sys", None, "{}", {}, ())
    sent: list[RenewLease] = []
    with LeaseRenewer(assignment, sent.append) as renewer:
        assert abs(renewer.interval_s - 0.1) < 1e-9
        time.sleep(0.55)
    count = len(sent)
    time.sleep(0.25)
    assert 3 <= count <= 6 and len(sent) == count
    assert sent[0] == RenewLease("run-1", "parser", "w1", 4)


def test_a_failing_send_is_counted_and_renewal_goes_on() -> None:
    assignment = Assignment("w1", "run-1", "parser", 1, True, None, 4, 0, 150, "sys", None, "{}", {}, ())
    calls: list[int] = []

    def flaky(_: RenewLease) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("broker hiccup")

    with LeaseRenewer(assignment, flaky) as renewer:
        time.sleep(0.3)
    assert renewer.failures == 1 and renewer.renewals >= 1
