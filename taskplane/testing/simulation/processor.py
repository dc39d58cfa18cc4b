"""The simulated log's machinery: virtual time (``Loop``), delivery through the broker
(``Broker``) and a stateful processor on it (``Processor``): commands decided one per
transaction with the runtime's own ``step``, timers ticked on the runtime's cadence,
aborted transactions, and a crash that restores the states from what was recorded."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any, NamedTuple

from taskplane.contract.decider import Decider, Output, step

HOP_MS = 2  # one trip through the broker
TICK_INTERVAL_MS = 200  # RuntimeSettings.tick_interval_ms
TICK_GRACE_MS = 3_000  # RuntimeSettings.tick_grace_after_failure_ms
RECOVERY_MS = 1_000  # an aborted transaction's rewind
# What an ``abort`` hook may answer besides True (aborted): the transaction committed but
# its reply was lost, so the runtime rewinds its memory to before it and decides the
# input again; what it wrote stays on the log (a fired slot is fired a second time).
LOST_REPLY = "lost-reply"


class Loop:
    """Virtual time: actions run in time order (ties in the order they were scheduled)."""

    __slots__ = ("_heap", "_seq", "now")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.now = 0

    def at(self, time_ms: int, action: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (max(time_ms, self.now), self._seq, action, args))

    def run(self, horizon_ms: int) -> None:
        """Until nothing is left to happen (every run ended, every timer spent) or the
        horizon passed."""
        heap = self._heap
        pop = heapq.heappop
        while heap:
            time_ms, _, action, args = pop(heap)
            if time_ms > horizon_ms:
                break
            self.now = time_ms
            action(*args)


class Broker:
    """Delivery through the broker: a hop, held to the end of an outage."""

    __slots__ = ("loop", "outages")

    def __init__(self, loop: Loop, outages: list[tuple[int, int]]) -> None:
        self.loop = loop
        self.outages = outages

    def away_until(self, time_ms: int) -> int | None:
        for start, end in self.outages:
            if start <= time_ms < end:
                return end
        return None

    def deliver(self, sent_ms: int, action: Callable[..., None], *args: Any, hop_ms: int = HOP_MS) -> None:
        arrival = sent_ms + hop_ms
        end = self.away_until(arrival)
        self.loop.at(arrival if end is None else end + hop_ms, action, *args)

    def redeliver(self, sent_ms: int, action: Callable[..., None], *args: Any) -> None:
        """A duplicate delivery (a ``duplicate`` fault): the same, a little after the first."""
        self.deliver(sent_ms, action, *args, hop_ms=HOP_MS + 7)


class Crash(NamedTuple):
    """A processor's crash: whether the transaction under way committed, and how long
    until the process is back."""

    committed: bool
    down_ms: int


class Processor:
    """A stateful processor on the simulated log: commands decided one at a time (one per
    transaction), timers ticked on the runtime's cadence. ``route`` takes its outputs."""

    def __init__(self, name: str, decider: Decider[Any, Any, Any], broker: Broker,
                 route: Callable[[Output, int], None], record: Callable[[int, str, Any], None],
                 abort: Callable[[str, Any], bool | str] | None = None, hints: Any = None,
                 crash: Callable[[str, Any], Crash | None] | None = None,
                 restore: Callable[[], dict[str, Any]] | None = None) -> None:
        self.name = name
        self.decider = decider
        self.hints = hints  # the recorded inputs' live source (contract.decider.Hints), if any
        self.broker = broker
        self.loop = broker.loop
        self.route = route
        self.record = record
        self.abort = abort  # whether this command's transaction aborts (a fault)
        self.crash = crash  # whether the process dies in this command's transaction (a fault)
        self.restore = restore  # a restarted process's states: the fold of what it recorded
        self.states: dict[str, Any] = {}
        self.timers: list[tuple[int, str]] = []
        self.check_at: int | None = None
        self.paused_until = 0  # recovering from an aborted transaction
        self.queue: list[tuple[str, Any, int]] = []  # arrived while recovering
        self.decided = 0
        self.down: list[tuple[int, int]] = []  # (died, back): the crashes' windows

    def command(self, key: str, command: Any, at_ms: int) -> None:
        if self.loop.now < self.paused_until:
            self.queue.append((key, command, at_ms))
            return
        aborted = self.abort(key, command) if self.abort is not None else False
        if aborted:
            # The transaction aborts: nothing of it is kept (or, its reply lost, all of it
            # but the memory); the input is read again once the processor recovered (and
            # ticks wait for the queued renewals).
            if aborted == LOST_REPLY:
                self._apply(key, command, at_ms, keep=False)
            self.paused_until = self.loop.now + RECOVERY_MS
            self.queue.append((key, command, at_ms))
            self.loop.at(self.paused_until, self._resume)
            return
        crash = self.crash(key, command) if self.crash is not None else None
        if crash is not None:
            self._die(key, command, at_ms, crash)
            return
        self._apply(key, command, at_ms)

    def _die(self, key: str, command: Any, at_ms: int, crash: Crash) -> None:
        """The process dies in this command's transaction: committed (its events and
        outputs are out, its input consumed) or not (nothing of it is, the input is read
        again). Its memory is gone: the restart restores the states from what it recorded
        and ticks what is due then (missed slots, expired timers)."""
        if crash.committed:
            self._apply(key, command, at_ms)
        else:
            self.queue.append((key, command, at_ms))
        self.states, self.timers, self.check_at = {}, [], None
        self.paused_until = self.loop.now + crash.down_ms
        self.down.append((self.loop.now, self.paused_until))
        self.loop.at(self.paused_until, self._restart)

    def _restart(self) -> None:
        assert self.restore is not None
        self.states = self.restore()
        for key, state in self.states.items():
            deadline = self.decider.next_deadline(state)
            if deadline is not None:
                heapq.heappush(self.timers, (deadline, key))
        if self.timers:
            self._check_by(self.timers[0][0])
        self._resume()

    def _resume(self) -> None:
        queued, self.queue = self.queue, []
        for key, command, at_ms in queued:
            self.command(key, command, at_ms)

    def _apply(self, key: str, command: Any, at_ms: int, keep: bool = True) -> None:
        self.decided += 1
        decider = self.decider
        hints = self.hints
        state, events, outputs, _failure = step(decider, self.states.get(key), command, at_ms, hints)
        if hints is not None:  # one command, one transaction: what the hints learnt is kept
            if keep:
                hints.commit()
            else:
                hints.roll_back()
        if keep:
            self.states[key] = state
        for event in events:
            self.record(at_ms, key, event)
        for output in outputs:
            self.route(output, at_ms)
        if not keep:
            return
        deadline = decider.next_deadline(state)
        if deadline is not None:
            heapq.heappush(self.timers, (deadline, key))
            self._check_by(deadline)

    def _check_by(self, deadline: int) -> None:
        at = -(-deadline // TICK_INTERVAL_MS) * TICK_INTERVAL_MS
        if self.check_at is None or at < self.check_at:
            self.check_at = at
            self.loop.at(at, self._check, at)

    def _check(self, at: int) -> None:
        if at != self.check_at:
            return  # superseded by an earlier check
        self.check_at = None
        now = self.loop.now
        held = max(self.paused_until + TICK_GRACE_MS if self.paused_until else 0, self._after_outage(now))
        if held > now:
            if self.timers:
                self._check_by(held)
            return
        if self.timers and self.timers[0][0] <= now:
            self.broker.deliver(now, self._tick, now)
        elif self.timers:
            self._check_by(self.timers[0][0])

    def _after_outage(self, now: int) -> int:
        for start, end in self.broker.outages:
            if start <= now < end + TICK_GRACE_MS:
                return end + TICK_GRACE_MS
        return 0

    def _tick(self, now_ms: int) -> None:
        due: list[str] = []
        timers = self.timers
        while timers and timers[0][0] <= now_ms:
            _, key = heapq.heappop(timers)
            if key not in due:
                due.append(key)
        decider = self.decider
        tick = decider.tick(now_ms)
        for key in sorted(due):
            deadline = decider.next_deadline(self.states.get(key))
            if deadline is None:
                continue
            if deadline > now_ms:
                heapq.heappush(timers, (deadline, key))
                continue
            self.command(key, tick, now_ms)
        if timers:
            self._check_by(timers[0][0])
