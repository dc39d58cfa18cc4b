"""The decider contract every stateful processor implements.

A decider is pure: plain data in, plain data out. It never reads a clock (time
arrives as ``at_ms``, the log timestamp of the command being decided), never draws
random numbers and performs no I/O. The runtime in ``streams/`` owns everything else.

State is kept per key (the Kafka record key, e.g. a run id). ``None`` stands for
"nothing known about this key yet". ``next_deadline`` lets the runtime keep a timer
index without knowing what the timers mean: when the log's time (a ``Tick``) passes a
key's deadline, the runtime decides that key's ``Tick`` command. ``retire_at`` does the
same for a finished key's retirement, in a separate index, so timers hold live keys only.
``snapshot`` and ``restored`` map a state to what the changelog stores and back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")


@dataclass(frozen=True, slots=True)
class Output:
    """A derived record the runtime produces next to the events.

    ``topic`` is a role from the topic catalog (``work``, ``deadletter``,
    ``tool-outcomes``, ``inbox``, ``breakers``), not a physical topic name.
    """

    topic: str
    key: str
    value: object


class Decider(Protocol[S, C, E]):
    def decide(self, state: S | None, command: C, at_ms: int) -> Sequence[E]:
        """Events that ``command`` causes in ``state``; raise DecisionError to reject."""
        ...

    def evolve(self, state: S | None, event: E) -> S | None:
        """The state after ``event``."""
        ...

    def next_deadline(self, state: S | None) -> int | None:
        """Earliest log time at which this key must see a ``Tick``; None when no timer."""
        ...

    def retire_at(self, state: S | None) -> int | None:
        """Log time at which a finished key's state shrinks or goes (a ``Tick`` is then
        decided for it); None for live keys and keys kept forever."""
        ...

    def tick(self, now_ms: int) -> C:
        """The command that tells a key the log's time reached ``now_ms``."""
        ...

    def snapshot(self, state: S) -> object:
        """What the changelog stores for ``state``."""
        ...

    def restored(self, stored: Any) -> S:
        """The state a changelog value stands for (``snapshot``'s output or an older form)."""
        ...

    def outputs(self, state: S | None, event: E) -> Iterable[Output]:
        """Derived records for ``event``, given the state *after* it was evolved."""
        ...

    def rejection(self, command: C, reason: str) -> E:
        """The event recording that ``command`` was rejected (never a crash)."""
        ...


class DecisionError(Exception):
    """A command that cannot be applied in the current state. Not retryable."""


class PlainState:
    """Defaults for a decider whose states are stored as they are and kept forever."""

    def retire_at(self, state: object) -> int | None:
        return None

    def snapshot(self, state: object) -> object:
        return state

    def restored(self, stored: Any) -> Any:
        return stored


@dataclass(slots=True)
class InMemoryRunner(Generic[S, C, E]):
    """Runs a decider over commands without a broker: the reference semantics the
    runtime must reproduce, and the harness for unit and property tests."""

    decider: Decider[S, C, E]
    states: dict[str, S | None]
    log: list[tuple[str, E]]
    outputs: list[Output]

    @classmethod
    def of(cls, decider: Decider[S, C, E]) -> InMemoryRunner[S, C, E]:
        return cls(decider, {}, [], [])

    def handle(self, key: str, command: C, at_ms: int) -> list[E]:
        state = self.states.get(key)
        try:
            events = list(self.decider.decide(state, command, at_ms))
        except DecisionError as error:
            events = [self.decider.rejection(command, str(error))]
        for event in events:
            state = self.decider.evolve(state, event)
            self.log.append((key, event))
            self.outputs.extend(self.decider.outputs(state, event))
        if state is None and self.states.get(key) is not None:  # gone, as a tombstone removes it
            del self.states[key]
        else:
            self.states[key] = state
        return events

    def advance(self, now_ms: int) -> list[E]:
        """Deliver a Tick to every key whose deadline or retirement has passed."""
        fired: list[E] = []
        decider = self.decider
        for key in sorted(self.states):
            state = self.states.get(key)
            due = [t for t in (decider.next_deadline(state), decider.retire_at(state)) if t is not None]
            if due and min(due) <= now_ms:
                fired.extend(self.handle(key, decider.tick(now_ms), now_ms))
        return fired

    def restart(self, decider: Decider[S, C, E] | None = None) -> None:
        """As a restarted processor: every state through ``snapshot`` and ``restored``
        (of ``decider``, a fresh instance, when given)."""
        if decider is not None:
            self.decider = decider
        snapshots = {key: self.decider.snapshot(state) for key, state in self.states.items() if state is not None}
        self.states = {key: self.decider.restored(stored) for key, stored in snapshots.items()}
