"""bench.idle's CPU accounting: a process's figure is its /proc total, so a thread that
exits within the window (the JVM's compiler threads come and go) takes nothing off it,
and its time shows as ``exited``."""

from __future__ import annotations

import os
import threading

from bench import idle

TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def test_a_thread_that_exits_keeps_its_time_in_the_total() -> None:
    before = {"broker": {"": 1_000, "network/11": 300, "C1 CompilerThread/12": 500}}
    # The compiler thread ran 20 more ticks, then exited; the network thread ran 10.
    after = {"broker": {"": 1_030, "network/11": 310}}
    figures = idle.per_second(before, after, seconds=1.0)
    assert figures["broker"] == round(30 * TICK_MS, 1)
    assert figures["threads"]["broker:network"] == round(10 * TICK_MS, 1)
    assert figures["threads"]["broker:exited"] == round(20 * TICK_MS, 1)


def test_the_stack_figure_leaves_the_harness_out() -> None:
    before = {"broker": {"": 0}, "harness": {"": 0}}
    after = {"broker": {"": 10}, "harness": {"": 5}}
    figures = idle.per_second(before, after, seconds=1.0)
    assert figures["stack"] == round(10 * TICK_MS, 1)
    assert figures["total"] == round(15 * TICK_MS, 1)


def test_ticks_of_this_process_name_each_thread() -> None:
    done = threading.Event()
    thread = threading.Thread(target=done.wait, name="idle-probe")
    thread.start()
    try:
        ticks = idle._ticks(os.getpid())  # noqa: SLF001
    finally:
        done.set()
        thread.join()
    assert "" in ticks
    assert any(key.endswith(f"/{thread.native_id}") for key in ticks)
