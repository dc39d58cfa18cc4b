"""bench.timeline's arithmetic: each step after its run's submit."""

from __future__ import annotations

from bench.timeline import steps


def test_steps_are_timed_from_each_runs_own_submit() -> None:
    commands = [("a", 1_000, "SubmitRun"), ("a", 1_012, "ClaimTask:parser"), ("a", 1_023, "CompleteTask:parser"),
                ("b", 5_000, "SubmitRun"), ("b", 5_010, "ClaimTask:parser"),
                ("c", 9_000, "ClaimTask:parser")]  # its submit was before the window: left out
    ends = [("a", "parser", 1_022.5), ("b", "parser", 5_020.0)]
    assert steps(commands, ends) == {
        "SubmitRun": [0.0, 0.0],
        "ClaimTask:parser": [12.0, 10.0],
        "CompleteTask:parser": [23.0],
        "end:parser": [22.5, 20.0],
    }
