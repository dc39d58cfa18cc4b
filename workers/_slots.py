"""How many attempts a worker runs at once, against its concurrency."""

from __future__ import annotations

import threading


class Slots:
    """Attempts running agent code, against the concurrency. Work is taken from the
    ``work`` topic only while a slot is free; a claim waiting for its answer holds none.
    A grant (a claim's, or a follow-on the orchestrator gave because this worker said it
    had room) is always taken: the lease is already this worker's, so the count may
    briefly exceed the limit when they race."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._changed = threading.Condition()

    def wait_free(self, timeout_s: float) -> bool:
        """Whether a slot is free (waiting up to ``timeout_s`` for one); takes nothing,
        so a worker waiting for work still offers all its free slots."""
        with self._changed:
            return self._changed.wait_for(lambda: self._used < self.limit, timeout_s)

    def take(self) -> None:
        with self._changed:
            self._used += 1

    def release(self) -> None:
        with self._changed:
            self._used -= 1
            self._changed.notify()

    def free(self) -> int:
        with self._changed:
            return max(0, self.limit - self._used)
