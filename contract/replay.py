"""Re-deciding a recorded log: the core of ``taskplane verify`` (Temporal's Replayer is
the model). Pure: decoded commands and events in, the first divergence out.

One partition at a time, commands in offset order: each command is decided with
``contract.decider.step`` from the state the replay folded so far, with the input its
recorded events carry (``Decider.recorded``), and the events it gives are compared with
the events the log holds for it (``causation_id`` is the command's message id, per key).
A ``Tick`` is decided for every key whose deadline or retirement it passed, as the
runtime does. A key whose history starts before the retained commands (its first event
was caused by a command the log no longer has) is skipped, and so is a key after its
first divergence.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from taskplane.contract.decider import Decider, Output, step

S = TypeVar("S")
C = TypeVar("C")
E = TypeVar("E")


class Given:
    """``Hints`` that give one recorded value and learn nothing: a replay's input."""

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def given(self, state: object, command: object, at_ms: int) -> Any:
        return self.value

    def decided(self, state: object, command: object, events: Sequence[object], at_ms: int) -> Iterable[Output]:
        return ()

    def commit(self) -> None:
        pass

    def roll_back(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class LoggedCommand:
    """A command as the input topic holds it. ``key`` is the record key ("" for a Tick),
    ``message_id`` its envelope's id, ``at_ms`` its record timestamp."""

    offset: int
    key: str
    message_id: str
    command: Any
    at_ms: int


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    offset: int
    key: str
    causation_id: str
    event: Any


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first place a key's re-decided events differ from its recorded ones.
    ``expected``/``actual`` is None where one side has no event at ``index``."""

    partition: int
    command: LoggedCommand | None  # None: recorded events whose command is not in the log
    key: str
    index: int
    expected: Any
    actual: Any
    given: Any = None


@dataclass(slots=True)
class PartitionReport:
    partition: int
    commands: int = 0
    decisions: int = 0
    events: int = 0
    keys: int = 0
    skipped_keys: int = 0  # history older than the retained commands
    divergences: list[Divergence] = field(default_factory=list)  # the first of each diverging key


def replay_partition(
    decider: Decider[S, C, E],
    partition: int,
    commands: Sequence[LoggedCommand],
    events: Iterable[LoggedEvent],
    wanted: Callable[[str], bool] | None = None,
    progress: Callable[[int], None] | None = None,
) -> PartitionReport:
    """Re-decide ``commands`` (one partition, offset order) and compare with ``events``.
    ``wanted`` limits the keys verified (e.g. one system's runs); ``progress`` is called
    with the number of commands done, now and then."""
    report = PartitionReport(partition)
    recorded: dict[tuple[str, str], deque[LoggedEvent]] = {}
    first_cause: dict[str, str] = {}
    for fact in events:
        recorded.setdefault((fact.causation_id, fact.key), deque()).append(fact)
        first_cause.setdefault(fact.key, fact.causation_id)
        report.events += 1
    ids = {logged.message_id for logged in commands}
    skipped = {key for key, cause in first_cause.items() if cause not in ids}
    report.skipped_keys = len(skipped)
    repeats: dict[tuple[str, str], int] = {}  # a message id sent twice: its events split by count
    for logged in commands:
        pair = (logged.message_id, logged.key)
        repeats[pair] = repeats.get(pair, 0) + 1
    tick_type = type(decider.tick(0))
    states: dict[str, S | None] = {}
    timers = _Timers()
    diverged: set[str] = set()
    seen: set[str] = set()

    def verified(key: str) -> bool:
        return key not in skipped and key not in diverged and (wanted is None or wanted(key))

    for done, logged in enumerate(commands, 1):
        command = logged.command
        if type(command) is tick_type:
            now_ms: int = command.now_ms  # type: ignore[attr-defined]  # a Tick wakes every key due by then
            keys, at_ms = timers.due(now_ms), now_ms
        else:
            keys, at_ms = [logged.key], logged.at_ms
        for key in keys:
            if not verified(key):
                continue
            seen.add(key)
            group = recorded.get((logged.message_id, key), deque())
            given = decider.recorded(command, [entry.event for entry in group]) if group else None
            result = step(decider, states.get(key), command, at_ms, Given(given))
            report.decisions += 1
            actual = result.events
            if repeats.get((logged.message_id, key), 1) > 1:
                repeats[(logged.message_id, key)] -= 1
                expected = [group.popleft().event for _ in range(min(len(actual), len(group)))]
            else:
                expected = [entry.event for entry in group]
                group.clear()
            index = _first_difference(expected, actual)
            if index is not None:
                report.divergences.append(Divergence(partition, logged, key, index, _at(expected, index),
                                                     _at(actual, index), given))
                diverged.add(key)
                states.pop(key, None)
                timers.set(key, None)
                continue
            if result.state is None:
                states.pop(key, None)
                timers.set(key, None)
            else:
                states[key] = result.state
                due = [t for t in (decider.next_deadline(result.state), decider.retire_at(result.state))
                       if t is not None]
                timers.set(key, min(due, default=None))
        report.commands = done
        if progress is not None and done % 10_000 == 0:
            progress(done)
    by_id = {logged.message_id: logged for logged in commands}
    for (cause, key), group in recorded.items():  # recorded events no decision of the replay accounted for
        if group and verified(key):
            report.divergences.append(Divergence(partition, by_id.get(cause), key, 0, group[0].event, None))
            diverged.add(key)
    report.keys = len(seen | diverged)
    report.divergences.sort(key=lambda d: d.command.offset if d.command is not None else -1)
    return report


def _first_difference(expected: Sequence[Any], actual: Sequence[Any]) -> int | None:
    for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
        if want != got:
            return index
    return None if len(expected) == len(actual) else min(len(expected), len(actual))


def _at(events: Sequence[Any], index: int) -> Any:
    return events[index] if index < len(events) else None


class _Timers:
    """Keys by the log time a Tick must wake them at (deadline or retirement)."""

    __slots__ = ("at", "heap")

    def __init__(self) -> None:
        self.at: dict[str, int] = {}
        self.heap: list[tuple[int, str]] = []

    def set(self, key: str, due: int | None) -> None:
        if due is None:
            self.at.pop(key, None)
        elif self.at.get(key) != due:
            self.at[key] = due
            heapq.heappush(self.heap, (due, key))

    def due(self, now_ms: int) -> list[str]:
        keys = []
        heap = self.heap
        while heap and heap[0][0] <= now_ms:
            due, key = heapq.heappop(heap)
            if self.at.get(key) == due:
                del self.at[key]
                keys.append(key)
        return sorted(keys)
