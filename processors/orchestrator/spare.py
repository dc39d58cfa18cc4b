"""Free worker slots, as completions report them: what a new run's root tasks may be
granted from at ``SubmitRun``, so they skip the ``work`` offer and the claim round trip.

A ``CompleteTask`` carries ``follow_on``, the completer's free slots; what its own
follow-on grants leave over is the worker's spare capacity as of that command's log
time. A report is fresh for a submit if it is at most ``window_ms`` older than the
submit (log time). A report younger than the submit is fresh: the worker was alive
after it, whether the submit waited in a backlog (at saturation, every submit does) or
the clocks differ. The freshest report with a slot is offered first; each grant uses
one slot; the worker's next report replaces what is left.

This is a hint, held per partition by ``hints.OrchestratorHints``: a submit's decision
depends on it only through ``RunSubmitted.free_slots``, the recorded input. ``commit``
and ``roll_back`` follow the runtime's transaction: a system's reports are copied once
per batch, before the batch first changes them.
"""

from __future__ import annotations

DEFAULT_WINDOW_MS = 250
_ABSENT: dict[str, tuple[int, int]] = {}


class SpareSlots:
    __slots__ = ("_reports", "_saved", "window_ms")

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        if window_ms < 0:
            raise ValueError("spare slots: window_ms must be >= 0")
        self.window_ms = window_ms
        # per system, worker -> (slots, at_ms); insertion order is report order (freshest last)
        self._reports: dict[str, dict[str, tuple[int, int]]] = {}
        self._saved: dict[str, dict[str, tuple[int, int]]] = {}  # as of the last commit, per changed system

    def note(self, system: str, worker: str, slots: int, at_ms: int) -> None:
        """``worker`` has ``slots`` free as of ``at_ms`` (replaces its earlier report)."""
        reports = self._changing(system)
        reports.pop(worker, None)
        if slots > 0:
            reports[worker] = (slots, at_ms)

    def offer(self, system: str, at_ms: int, wanted: int) -> tuple[str, ...]:
        """Up to ``wanted`` slots of ``system`` reported within the window of ``at_ms``,
        one worker id per slot, the freshest report first. Nothing is used: ``use``
        takes what a decision granted."""
        reports = self._reports.get(system)
        if not reports or wanted <= 0:
            return ()
        offered: list[str] = []
        for worker in reversed(reports):
            slots, noted = reports[worker]
            if at_ms - noted > self.window_ms:
                continue
            offered.extend([worker] * min(slots, wanted - len(offered)))
            if len(offered) == wanted:
                break
        if not offered:  # nothing fresh: drop what can never be fresh again for later commands
            stale = [w for w, (_, noted) in reports.items() if at_ms - noted > self.window_ms]
            if stale:
                reports = self._changing(system)
                for worker in stale:
                    del reports[worker]
        return tuple(offered)

    def use(self, system: str, worker: str) -> None:
        """One of ``worker``'s slots was granted."""
        report = self._reports.get(system, _ABSENT).get(worker)
        if report is None:
            return
        reports = self._changing(system)
        if report[0] <= 1:
            del reports[worker]
        else:
            reports[worker] = (report[0] - 1, report[1])

    def commit(self) -> None:
        self._saved.clear()

    def roll_back(self) -> None:
        for system, reports in self._saved.items():
            if reports:
                self._reports[system] = reports
            else:
                self._reports.pop(system, None)
        self._saved.clear()

    def _changing(self, system: str) -> dict[str, tuple[int, int]]:
        reports = self._reports.setdefault(system, {})
        if system not in self._saved:
            self._saved[system] = dict(reports)
        return reports
