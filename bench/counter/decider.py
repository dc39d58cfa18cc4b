"""The smallest decider: per-key running totals.

It exercises every part of the runtime (decide, evolve, changelog, ticks,
rejections) with nothing domain-specific in the way; the runtime's exactly-once
tests and its benchmark run it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, assert_never

from taskplane.contract.decider import DecisionError, NoInputs, Output, PlainState


@dataclass(frozen=True, slots=True)
class Add:
    key: str
    amount: int
    seq: int


@dataclass(frozen=True, slots=True)
class CounterTick:
    now_ms: int


@dataclass(frozen=True, slots=True)
class Added:
    key: str
    amount: int
    total: int
    seq: int


@dataclass(frozen=True, slots=True)
class AddRejected:
    key: str
    seq: int
    reason: str


@dataclass(frozen=True, slots=True)
class Counter:
    key: str
    total: int
    count: int


CounterCommand = Add | CounterTick
CounterEvent = Added | AddRejected


class CounterDecider(PlainState, NoInputs):
    # Class patterns without positional sub-patterns: each is one isinstance check
    # (destructuring through __match_args__ cost a third of this decider's time).
    def decide(self, state: Counter | None, command: CounterCommand, at_ms: int, given: Any = None) -> Sequence[CounterEvent]:
        match command:
            case Add():
                if command.amount < 0:
                    raise DecisionError("amount must not be negative")
                total = (state.total if state else 0) + command.amount
                return [Added(command.key, command.amount, total, command.seq)]
            case CounterTick():
                return []
            case _:
                assert_never(command)

    def evolve(self, state: Counter | None, event: CounterEvent) -> Counter | None:
        match event:
            case Added():
                return Counter(event.key, event.total, (state.count if state else 0) + 1)
            case AddRejected():
                return state
            case _:
                assert_never(event)

    def next_deadline(self, state: Counter | None) -> int | None:
        return None

    def tick(self, now_ms: int) -> CounterCommand:
        return CounterTick(now_ms)

    def outputs(self, state: Counter | None, event: CounterEvent) -> Iterable[Output]:
        return ()

    def rejection(self, command: CounterCommand, reason: str) -> CounterEvent:
        match command:
            case Add():
                return AddRejected(command.key, command.seq, reason)
            case CounterTick():
                return AddRejected("", -1, reason)
            case _:
                assert_never(command)
