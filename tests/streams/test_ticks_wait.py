"""How long an idle runtime may wait for records before a timer could be due (no broker)."""

from __future__ import annotations

import time
from typing import Any

from taskplane.streams.partition_state import PartitionState
from taskplane.streams.ticks import Ticker


def _ticker(interval_ms: int = 200) -> Ticker:
    return Ticker("unit", lambda now_ms: now_ms, "input", None, interval_ms)  # type: ignore[arg-type]


def _with_timer(at_ms: int) -> PartitionState[Any]:
    owned: PartitionState[Any] = PartitionState()
    owned.timers.set("run-1", at_ms)
    return owned


def test_no_timer_means_no_wait_bound() -> None:
    assert _ticker().wait_s({0: PartitionState(), 1: PartitionState()}) is None
    assert _ticker().wait_s({}) is None


def test_a_future_timer_bounds_the_wait() -> None:
    now_ms = int(time.time() * 1000)
    wait = _ticker().wait_s({0: PartitionState(), 1: _with_timer(now_ms + 3_000)})
    assert wait is not None and 2.0 < wait <= 3.0


def test_a_passed_timer_waits_only_for_the_tick_interval() -> None:
    ticker = _ticker(interval_ms=60_000)
    past = {0: _with_timer(int(time.time() * 1000) - 1_000)}
    assert ticker.wait_s(past) == 0.0  # never checked: due now
    assert ticker.due(past)  # the check happened: the next one is an interval away
    wait = ticker.wait_s(past)
    assert wait is not None and 50.0 < wait <= 60.0
    assert ticker.wait_s({}) is None


def test_a_hold_defers_the_next_tick() -> None:
    ticker = _ticker()
    ticker.hold(30.0)
    wait = ticker.wait_s({0: _with_timer(int(time.time() * 1000) - 1_000)})
    assert wait is not None and 25.0 < wait <= 30.0
    assert ticker.due({0: _with_timer(0)}) == []
