"""The retry schedule: the seeds' figures, the cap, and deterministic jitter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from taskplane.contract.plan import ExecutionPolicy
from taskplane.processors.orchestrator.backoff import backoff_ms, base_backoff_ms, unit_jitter

SEEDS = ExecutionPolicy(max_retries=5, backoff_multiplier=2.0, initial_backoff_ms=1_000,
                        max_backoff_ms=60_000, jitter_fraction=0.1)


def test_seeds_schedule_1_2_4_8_16_32_then_the_60s_cap_within_ten_percent() -> None:
    expected_s = [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert [base_backoff_ms(SEEDS, n) for n in range(1, 10)] == [s * 1_000.0 for s in expected_s]
    for run_id in ("run-a", "run-b", "run-c"):
        for n, seconds in enumerate(expected_s, start=1):
            delay = backoff_ms(SEEDS, run_id, "web.search", n)
            assert seconds * 900 <= delay <= seconds * 1_100, (run_id, n, delay)


def test_jitter_is_deterministic_and_spreads_retries() -> None:
    assert backoff_ms(SEEDS, "r", "t", 3) == backoff_ms(SEEDS, "r", "t", 3)
    delays = {backoff_ms(SEEDS, f"run-{i}", "parser", 3) for i in range(50)}
    assert len(delays) > 25  # not a synchronized herd
    assert min(delays) < 4_000 < max(delays)


def test_no_jitter_gives_the_exact_schedule() -> None:
    policy = ExecutionPolicy(jitter_fraction=0.0)
    assert [backoff_ms(policy, "r", "t", n) for n in (1, 2, 3)] == [1_000, 2_000, 4_000]


def test_huge_failure_counts_stay_capped() -> None:
    assert base_backoff_ms(SEEDS, 10_000) == 60_000.0


@given(st.text(max_size=20), st.text(max_size=20), st.integers(min_value=1, max_value=10_000))
def test_unit_jitter_is_within_minus_one_and_one(run_id: str, task: str, n: int) -> None:
    assert -1.0 <= unit_jitter(run_id, task, n) <= 1.0
