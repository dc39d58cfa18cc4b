"""Keeping granted leases alive: one thread per worker sends each running attempt's
``RenewLease`` every leaseTimeout/3 until the attempt ends, so two renewals may be lost
before expiry.

The cadence is a schedule, not a pause after each send: ``send`` only queues the record
(it must not wait for the broker), so an outage holds no renewal back. Each record
carries its send time, which is what the orchestrator decides on, so renewals queued on
schedule during an outage still count once delivered. A renewal the broker never got is
reported by ``send``'s return value (its ``failure``) at the lease's next turn, counted
and logged; renewal goes on.

One scheduler for all leases, not a thread per attempt: starting and joining a thread
per task was a fifth of a worker's CPU at saturation (py-spy, docs/benchmarks.md)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

from taskplane.contract.messages import Assignment, RenewLease

log = logging.getLogger(__name__)


class Sent(Protocol):
    """What ``send`` returns: whether the broker refused the record (None: not known yet)."""

    @property
    def failure(self) -> str | None: ...


class Lease:
    """One attempt's lease while it is held: its renewal and how its sends went."""

    __slots__ = ("assignment", "failures", "interval_s", "last", "live", "renewals")

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        self.interval_s = max(assignment.lease_timeout_ms, 30) / 3000
        self.live = True
        self.last: Sent | None = None
        self.renewals = 0
        self.failures = 0


class Renewals:
    """``with renewals.held(assignment):`` around an attempt keeps its lease renewed."""

    def __init__(self, send: Callable[[RenewLease], Sent | None]) -> None:
        self._send = send
        self._due: list[tuple[float, int, Lease]] = []
        self._order = itertools.count()
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lease-renewals", daemon=True)
        self._thread.start()

    @contextmanager
    def held(self, assignment: Assignment) -> Iterator[Lease]:
        lease = Lease(assignment)
        with self._changed:
            entry = (time.monotonic() + lease.interval_s, next(self._order), lease)
            heapq.heappush(self._due, entry)
            if self._due[0] is entry:  # due before the one the scheduler sleeps until
                self._changed.notify()
        try:
            yield lease
        finally:
            with self._changed:  # sends happen under this lock: none can follow the release
                lease.live = False

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(5)

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                while self._due and (not self._due[0][2].live or self._due[0][0] <= now):
                    due, _, lease = heapq.heappop(self._due)
                    if not lease.live:
                        continue
                    self._renew(lease)
                    # behind (the thread stalled): the next one at once, then on schedule again
                    heapq.heappush(self._due, (max(due + lease.interval_s, now), next(self._order), lease))
                # until the next due renewal; held() and close() wake it earlier
                self._changed.wait(self._due[0][0] - now if self._due else None)

    def _renew(self, lease: Lease) -> None:
        a, last = lease.assignment, lease.last
        renewal = RenewLease(a.run_id, a.task, a.worker_id, a.epoch)  # most attempts end before one
        if last is not None and last.failure is not None:  # the previous one never reached the broker
            lease.failures += 1
            log.warning("renewal of %s/%s failed: %s", renewal.run_id, renewal.task, last.failure)
        try:
            lease.last = self._send(renewal)
            lease.renewals += 1
        except Exception as error:  # a lost renewal is survivable; keep trying
            lease.last = None
            lease.failures += 1
            log.warning("renewal of %s/%s failed: %s", renewal.run_id, renewal.task, error)
