"""What a processor keeps per owned input partition: each key's state, its timer and
its retirement (a finished key's), as of the last commit plus the open batch's changes
(which the batch's undo log can put back: ``streams/batch.py``)."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from taskplane.contract.decider import Hints

S = TypeVar("S")

# What the undo log keeps of a key: (state or ABSENT, timer, retirement).
Entry = tuple[Any, "int | None", "int | None"]
ABSENT: Any = object()  # a key the undo log saw without state


@dataclass(slots=True)
class Deadlines:
    """Keys by the log time they are due at: a dict plus a lazily invalidated heap."""

    at: dict[str, int] = field(default_factory=dict)
    heap: list[tuple[int, str]] = field(default_factory=list)

    def set(self, key: str, deadline: int | None) -> None:
        if deadline is None:
            self.at.pop(key, None)
        elif self.at.get(key) != deadline:
            self.at[key] = deadline
            heapq.heappush(self.heap, (deadline, key))

    def earliest(self) -> int | None:
        while self.heap:
            deadline, key = self.heap[0]
            if self.at.get(key) == deadline:
                return deadline
            heapq.heappop(self.heap)
        return None

    def due(self, now_ms: int, taken: dict[str, int] | None = None) -> list[str]:
        """Keys due by ``now_ms``, removed; ``taken`` gets each one's deadline."""
        keys: list[str] = []
        while (deadline := self.earliest()) is not None and deadline <= now_ms:
            _, key = heapq.heappop(self.heap)
            del self.at[key]
            keys.append(key)
            if taken is not None:
                taken[key] = deadline
        return keys


@dataclass(slots=True)
class PartitionState(Generic[S]):
    states: dict[str, S | None] = field(default_factory=dict)
    timers: Deadlines = field(default_factory=Deadlines)  # live keys' timers
    retiring: Deadlines = field(default_factory=Deadlines)  # finished keys' retirement
    # Keys the changelog lacks (restored by folding events when it was missing): the
    # next commit writes them, with whatever the batch changed.
    unsaved: set[str] = field(default_factory=set)
    hints: Hints[S, Any, Any] | None = None  # this partition's, kept and undone with its state
    # The input offset this instance's last commit stored here (-1: none since the
    # restore). The group's committed offset below it means a commit this instance took
    # as done was aborted after all (streams/sweep.py): memory is ahead; restore.
    committed_to: int = -1

    def entry(self, key: str) -> Entry:
        """The key as it is now, for the undo log."""
        return self.states.get(key, ABSENT), self.timers.at.get(key), self.retiring.at.get(key)

    def put_back(self, key: str, entry: Entry) -> None:
        state, timer, retire_at = entry
        if state is ABSENT:
            self.states.pop(key, None)
        else:
            self.states[key] = state
        self.timers.set(key, timer)
        self.retiring.set(key, retire_at)

    def earliest(self) -> int | None:
        times = [t for t in (self.timers.earliest(), self.retiring.earliest()) if t is not None]
        return min(times, default=None)

    def due(self, now_ms: int, found: Callable[[str, Entry], None] | None = None) -> list[str]:
        """Keys whose timer or retirement is due by ``now_ms``, both taken; ``found`` gets
        each key's entry as it was before (a batch's undo log: a batch that does not commit
        puts the timer back, or the key would never be ticked again)."""
        timers: dict[str, int] = {}
        retirements: dict[str, int] = {}
        keys = self.timers.due(now_ms, timers)
        retiring = [key for key in self.retiring.due(now_ms, retirements) if key not in self.timers.at]
        if found is not None:
            for key in timers.keys() | retirements.keys():
                state, timer, retire_at = self.entry(key)  # as it is now, less what was taken
                found(key, (state, timers.get(key, timer), retirements.get(key, retire_at)))
        return sorted({*keys, *retiring}) if retiring else keys
