"""The worker's side of the tool governor (``processors/breaker/permits.py``): before a
call to a tool with a rate limit or a concurrency cap, ask for a permit and wait for it.

Waiting is not failing: it burns no retry, and the attempt's lease keeps being renewed
meanwhile (``leases.Renewals`` renews every held attempt until it ends). The request is
written again every ``resend_s`` while nothing comes back; the governor ignores a
request it already queued and answers again one it already granted. Tools without
limits never get here (``ToolPlan.limited``), so they pay nothing."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol, TypeGuard

from taskplane.contract.messages import Assignment
from taskplane.contract.permits import AcquirePermit, PermitDenied, PermitGranted
from taskplane.contract.plan import ToolPlan
from taskplane.workers.exceptions import BreakerOpenError, WorkerError, WorkerStopping

log = logging.getLogger(__name__)

# The call's idempotency key, the try within the attempt, and the attempt's epoch: two
# attempts of one call can wait on one worker at once (a lease expired while its attempt
# still ran, and the retry came to the same worker).
PermitKey = tuple[str, int, int]
Answer = PermitGranted | PermitDenied


class PermitGate(Protocol):
    """What an attempt asks before a limited call: ``Permits`` on a worker, the simulator's
    own in virtual time (``taskplane/testing/simulation/workers.py``)."""

    def acquire(self, assignment: Assignment, plan: ToolPlan, key: str, try_no: int,
                stopping: threading.Event) -> None: ...


# A grant is used only while the call, run to its timeout from now, ends this long before
# the permit expires.
OUTLIVED_MARGIN_MS = 1_000


def outlived(answer: Answer, hold_ms: int, now_ms: int) -> TypeGuard[PermitGranted]:
    """A grant whose permit may expire before a call started now ends: it was granted so
    long ago (answered before a broker outage and delivered after it) that the governor
    may have expired it and granted its place to another call. Asked again, the governor
    renews it while it still holds it (a fresh grant), or queues the call. Expiry is in
    the governor's log time (the requests' clocks, its Ticks'); ``now_ms`` is this host's."""
    return isinstance(answer, PermitGranted) and now_ms + hold_ms + OUTLIVED_MARGIN_MS > answer.expires_ms


def permit_request(assignment: Assignment, plan: ToolPlan, key: str, try_no: int) -> AcquirePermit:
    a = assignment
    return AcquirePermit(plan.name, key, try_no, a.worker_id, a.run_id, a.task, a.epoch, plan.rate_limit,
                         plan.rate_period_ms, plan.concurrency, plan.timeout_ms)


def answered(answer: Answer, tool: str) -> None:
    """Return on a grant; raise what a denial means for the call."""
    if isinstance(answer, PermitDenied):
        if answer.reason == "breaker open":
            raise BreakerOpenError(tool, answer.retry_after_ms)
        raise PermitRefused(f"permit for {tool} refused: {answer.reason}")


class PermitRefused(WorkerError):
    """The governor will not grant this call's permit (a newer attempt holds it): this
    attempt's lease is gone, so its result would be rejected anyway."""


class Permits:
    def __init__(self, send: Callable[[AcquirePermit], Any], resend_s: float = 15.0) -> None:
        self._send = send
        self._resend_s = resend_s
        self._lock = threading.Lock()
        self._boxes: dict[PermitKey, queue.Queue[Answer]] = {}
        self.waiting: Counter[str] = Counter()  # calls waiting for a permit, by tool
        self.granted: Counter[str] = Counter()  # permits received, by tool

    def deliver(self, answer: Answer) -> None:
        """From the inbox reader: the answer to a request this worker is waiting on."""
        with self._lock:
            box = self._boxes.get((answer.key, answer.try_no, answer.epoch))
        if box is not None:
            box.put(answer)

    def acquire(self, assignment: Assignment, plan: ToolPlan, key: str, try_no: int,
                stopping: threading.Event) -> None:
        """Return once the permit is granted. Raises ``BreakerOpenError`` when the tool's
        breaker opened meanwhile, ``WorkerStopping`` on shutdown, ``PermitRefused``."""
        request = permit_request(assignment, plan, key, try_no)
        box: queue.Queue[Answer] = queue.Queue()
        slot = (key, try_no, assignment.epoch)
        with self._lock:
            self._boxes[slot] = box
            self.waiting[plan.name] += 1
        try:
            answer = self._wait(request, box, stopping)
        finally:
            with self._lock:
                self._boxes.pop(slot, None)
                self.waiting[plan.name] -= 1
        if isinstance(answer, PermitGranted):
            with self._lock:
                self.granted[plan.name] += 1
        answered(answer, plan.name)

    def _wait(self, request: AcquirePermit, box: queue.Queue[Answer], stopping: threading.Event) -> Answer:
        while True:
            self._send(request)
            resend_at = time.monotonic() + self._resend_s
            while time.monotonic() < resend_at:
                try:
                    answer = box.get(timeout=0.25)
                except queue.Empty:
                    if stopping.is_set():
                        raise WorkerStopping("worker is shutting down") from None
                    continue
                if answer.epoch != request.epoch or answer.worker_id != request.worker_id:
                    continue
                now_ms = int(time.time() * 1000)
                if not outlived(answer, request.hold_ms, now_ms):
                    return answer
                log.info("permit for %s granted %d ms ago, too long to call under it: asking again",
                         request.tool, now_ms - answer.granted_ms)
                break
            else:
                log.info("no permit for %s after %.0fs: asking again", request.tool, self._resend_s)
