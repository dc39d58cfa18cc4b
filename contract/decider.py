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

**Recorded inputs.** A decision is a function of (state, command, ``given``). ``given``
is what a decider may use beyond its state and command (a worker's free slot, later a
rate-limit permit or a tenant's deficit): live it comes from the wiring's ``Hints``, one
source per partition; the decider records it in the events it produces, and
``recorded`` reads it back from them, so a replay (``taskplane verify``) decides with
the same input. A decider that takes none ignores ``given`` and records ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from taskplane.contract.errors import TaskplaneError

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
    def decide(self, state: S | None, command: C, at_ms: int, given: Any = None) -> Sequence[E]:
        """Events that ``command`` causes in ``state`` with the input ``given`` (None: no
        input); raise DecisionError to reject. ``given`` must be recorded in the events."""
        ...

    def recorded(self, command: C, events: Sequence[E]) -> Any:
        """The ``given`` that the decision of ``command`` which produced ``events`` used,
        read back from them (what a replay passes to ``decide``); None for none."""
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


PART_SEP = "\x1f"  # between a key and a part's name in a split state's changelog key


def part_key(key: str, part: str) -> str:
    """The changelog key of ``part`` of ``key``'s state ("": its head, the key itself)."""
    return key if part == "" else f"{key}{PART_SEP}{part}"


@runtime_checkable
class SplitState(Protocol):
    """A decider whose state of one key is stored as several changelog records: a head
    (part "") and parts, so that no record grows with the state (the dispatcher's
    backlog). A commit writes only the parts that changed since the last commit (a
    value, or None: a tombstone); a restore joins the key's stored parts again.
    ``joined`` of what ``changed_parts(None, s)`` yields must equal ``s``."""

    def changed_parts(self, before: Any, after: Any) -> Iterable[tuple[str, object | None]]:
        """The parts to write going from ``before`` to ``after`` (either None: no state)."""
        ...

    def joined(self, parts: dict[str, Any]) -> Any:
        """The state the stored parts (decoded, by name) stand for; None without a head."""
        ...


class Hints(Protocol[S, C, E]):
    """The live source of recorded inputs: process-held knowledge that may shape a
    decision (a worker's free slots). Scoped to one partition: the runtime makes one
    when it is assigned and drops it when it is revoked. ``commit`` and ``roll_back``
    bracket the transaction: what an aborted batch learnt or used is put back. Hints are
    only hints: a decision depends on them only through ``given``, which is recorded."""

    def given(self, state: S | None, command: C, at_ms: int) -> Any:
        """The input for deciding ``command`` in ``state`` now; None for none."""
        ...

    def decided(self, state: S | None, command: C, events: Sequence[E], at_ms: int) -> Iterable[Output]:
        """Learn from a decision just made (``state`` after it); derived records that the
        hints' own bookkeeping needs written with it (e.g. a plan pin)."""
        ...

    def commit(self) -> None:
        """The open batch committed: what it learnt is kept."""
        ...

    def roll_back(self) -> None:
        """The open batch aborted: as it was after the last commit."""
        ...


class NoInputs:
    """``recorded`` for a decider that takes no inputs."""

    def recorded(self, command: object, events: Sequence[object]) -> Any:
        return None


class DecisionError(TaskplaneError):
    """A command that cannot be applied in the current state. Not retryable: the same
    command in the same state is refused the same way; the runtime records it as the
    decider's rejection event."""

    retryable = False


class Step(NamedTuple, Generic[S, E]):
    """What one command did to one key: the new state, its events and derived records.
    ``failure`` is an unexpected decider exception that was turned into the rejection."""

    state: S | None
    events: list[E]
    outputs: list[Output]
    failure: Exception | None


def step(decider: Decider[S, C, E], state: S | None, command: C, at_ms: int,
         hints: Hints[S, C, E] | None = None) -> Step[S, E]:
    """Decide ``command`` in ``state`` (with what ``hints`` give) and evolve its events:
    the one semantics that ``InMemoryRunner``, the Kafka runtime and the replayer share.

    A ``DecisionError`` becomes the decider's rejection event, evolved like any event.
    Any other exception of ``decide`` (a decider bug) becomes a rejection too, so one bad
    command never stops a partition. When ``evolve`` or ``outputs`` raise, nothing of
    the command's events is kept: the state stays as it was and the rejection is
    recorded without being evolved (evolve is what broke)."""
    failure: Exception | None = None
    given = None if hints is None else hints.given(state, command, at_ms)
    try:
        events = list(decider.decide(state, command, at_ms, given))
    except DecisionError as error:
        events = [decider.rejection(command, str(error))]
    except Exception as error:  # a decider bug: recorded, the partition keeps going
        failure = error
        events = [decider.rejection(command, f"internal error: {error!r}")]
    evolved = state
    outputs: list[Output] = []
    try:
        for event in events:
            evolved = decider.evolve(evolved, event)
            outputs.extend(decider.outputs(evolved, event))
    except Exception as error:
        rejected = decider.rejection(command, f"internal error: {error!r}")
        events, evolved, outputs, failure = [rejected], state, list(decider.outputs(state, rejected)), error
    if hints is not None:
        outputs.extend(hints.decided(evolved, command, events, at_ms))
    return Step(evolved, events, outputs, failure)


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
    runtime must reproduce (both apply ``step``; ``tests/contract/test_runner_contract.py``
    runs the same command logs through both), and the harness for unit and property
    tests. ``failures`` collects unexpected decider exceptions, which ``step`` turned
    into rejections, so a test can assert there were none.

    ``hints`` makes the hint source of one scope, as the runtime makes one per partition;
    ``scope`` says which scope a key is in (the runtime's partition of it; default: one
    scope). Each command is its own batch: the hints commit after it."""

    decider: Decider[S, C, E]
    states: dict[str, S | None]
    log: list[tuple[str, E]]
    outputs: list[Output]
    failures: list[Exception] = field(default_factory=list)
    hints: Callable[[], Hints[S, C, E]] | None = None
    scope: Callable[[str], int] = field(default=lambda key: 0)
    sources: dict[int, Hints[S, C, E]] = field(default_factory=dict)

    @classmethod
    def of(cls, decider: Decider[S, C, E], hints: Callable[[], Hints[S, C, E]] | None = None,
           scope: Callable[[str], int] | None = None) -> InMemoryRunner[S, C, E]:
        return cls(decider, {}, [], [], hints=hints, scope=scope or (lambda key: 0))

    def handle(self, key: str, command: C, at_ms: int) -> list[E]:
        source: Hints[S, C, E] | None = None
        if self.hints is not None:
            scope = self.scope(key)
            source = self.sources.get(scope)
            if source is None:
                source = self.sources[scope] = self.hints()
        result = step(self.decider, self.states.get(key), command, at_ms, source)
        if source is not None:
            source.commit()
        self.log.extend((key, event) for event in result.events)
        self.outputs.extend(result.outputs)
        if result.failure is not None:
            self.failures.append(result.failure)
        if result.state is None and self.states.get(key) is not None:  # gone, as a tombstone removes it
            del self.states[key]
        else:
            self.states[key] = result.state
        return result.events

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
        (of ``decider``, a fresh instance, when given), and no hints held."""
        self.sources.clear()
        if decider is not None:
            self.decider = decider
        if isinstance(self.decider, SplitState):
            split = self.decider
            stored = {key: dict(split.changed_parts(None, state)) for key, state in self.states.items()
                      if state is not None}
            self.states = {key: split.joined({name: value for name, value in parts.items() if value is not None})
                           for key, parts in stored.items()}
            return
        snapshots = {key: self.decider.snapshot(state) for key, state in self.states.items() if state is not None}
        self.states = {key: self.decider.restored(stored) for key, stored in snapshots.items()}
