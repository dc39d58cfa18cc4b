"""Keeping a granted lease alive: a thread that sends ``RenewLease`` every
leaseTimeout/3 until the attempt ends, so two renewals may be lost before expiry.

The cadence is a schedule, not a pause after each send: a send that blocks (the
broker is away) does not push the next renewal back. Each record carries its send
time, which is what the orchestrator decides on, so renewals produced on schedule
during an outage still count once delivered."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from taskplane.contract.messages import Assignment, RenewLease

log = logging.getLogger(__name__)


class LeaseRenewer:
    def __init__(self, assignment: Assignment, send: Callable[[RenewLease], None]) -> None:
        self._renewal = RenewLease(assignment.run_id, assignment.task, assignment.worker_id, assignment.epoch)
        self.interval_s = max(assignment.lease_timeout_ms, 30) / 3000
        self._send = send
        self._stop = threading.Event()
        self.renewals = 0
        self.failures = 0
        self.worst_lateness_s = 0.0  # how far behind its schedule a renewal was sent, at most
        self._thread = threading.Thread(
            target=self._run, name=f"renew-{assignment.run_id[:8]}/{assignment.task}", daemon=True
        )

    def start(self) -> LeaseRenewer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def __enter__(self) -> LeaseRenewer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        due = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            self.worst_lateness_s = max(self.worst_lateness_s, time.monotonic() - due)
            due += self.interval_s
            try:
                self._send(self._renewal)
                self.renewals += 1
            except Exception as error:  # a lost renewal is survivable; keep trying
                self.failures += 1
                log.warning("renewal of %s/%s failed: %s", self._renewal.run_id, self._renewal.task, error)
            due = max(due, time.monotonic())  # behind after a blocked send: the next one at once
