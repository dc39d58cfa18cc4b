"""Free worker slots, as completions report them: a new run's root tasks are granted
from here at ``SubmitRun``, so they skip the ``work`` offer and the claim round trip.

A ``CompleteTask`` carries ``follow_on``, the completer's free slots; what its own
follow-on grants leave over is the worker's spare capacity as of that command's log
time. A root task is granted to the worker with the freshest report that still has a
slot, if that report is at most ``window_ms`` older than the submit (log time). A report
younger than the submit is fresh: the worker was alive after it, whether the submit
waited in a backlog (at saturation, every submit does) or the clocks differ. Each grant
uses one slot; the worker's next report replaces what is left.

This is a hint, not state of any run: it lives in the process, is lost on restart and
is not rolled back with an aborted transaction. What a run's decisions depend on is the
``LeaseGranted`` they record, and that is in the log. The price is the follow-on
grants' one: a worker killed within ``window_ms`` of a completion holds the roots granted
to it until their leases expire (docs/orchestrator.md, "Root grants").
"""

from __future__ import annotations

DEFAULT_WINDOW_MS = 250


class SpareSlots:
    __slots__ = ("_reports", "window_ms")

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        if window_ms < 0:
            raise ValueError("spare slots: window_ms must be >= 0")
        self.window_ms = window_ms
        # per system, worker -> [slots, at_ms]; insertion order is report order (freshest last)
        self._reports: dict[str, dict[str, list[int]]] = {}

    def note(self, system: str, worker: str, slots: int, at_ms: int) -> None:
        """``worker`` has ``slots`` free as of ``at_ms`` (replaces its earlier report)."""
        reports = self._reports.setdefault(system, {})
        reports.pop(worker, None)
        if slots > 0:
            reports[worker] = [slots, at_ms]

    def take(self, system: str, at_ms: int) -> str | None:
        """A worker of ``system`` with a slot reported within the window of ``at_ms``,
        the freshest first; its slot is used. None when there is none."""
        reports = self._reports.get(system)
        if not reports:
            return None
        for worker in reversed(list(reports)):
            report = reports[worker]
            if at_ms - report[1] > self.window_ms:
                continue
            report[0] -= 1
            if report[0] == 0:
                del reports[worker]
            return worker
        # Nothing fresh: drop what can never be fresh again for later commands.
        for worker in [w for w, (_, noted) in reports.items() if at_ms - noted > self.window_ms]:
            del reports[worker]
        return None
