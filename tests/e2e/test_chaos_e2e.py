"""The short version of ``python -m bench.chaos``: a few dozen payment runs (and a few
governed ones: budgets, approvals a person grants; and diamonds whose follow-ons start
ahead of their grants) while each
kind of component (the broker included) is SIGKILLed once and comes back. Nothing may
be lost, doubled or stuck, and every independent check must hold. Recovery times
against their bounds (``slow``) are the benchmark's to judge, not this test's."""

from __future__ import annotations

import pytest

from bench.chaos import run  # importable through tests/conftest.py's finder

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]


@pytest.mark.timeout(1200)
def test_a_short_chaos_run_loses_nothing_doubles_nothing_and_nothing_stays_stuck() -> None:
    result, verdict = run(runs=40, seed=11, kills_per_kind=1, per_second=1.0)
    print(result)
    assert result["kills"] == {"orchestrator": 1, "breaker": 1, "dispatcher": 1, "cron": 1, "projector": 1,
                               "worker": 1, "broker": 1}
    assert result["cron"]["slots_fired"] > 0 and result["cron"]["slots_fired_twice"] == 0, result["cron"]
    governed = result["governance"]  # budgets and approvals through the kills (bench/_chaos_governance.py)
    assert governed["budget_runs"] > 0 and governed["refund_runs"] > 0, governed
    assert governed["approvals_granted"] >= governed["refunds_succeeded"] > 0, governed
    fan = result["fan"]  # a diamond whose follow-ons start ahead of their grants (bench/_chaos_fan.py)
    assert fan["fan_runs"] > 0 and fan["fan_runs_succeeded"] == fan["fan_runs"], fan
    assert fan["fan_started_ahead_at_least"] > 0, fan
    assert result["runs"] >= 40 and verdict.succeeded + verdict.dead_lettered == result["runs"], result
    assert (result["lost"], result["duplicated"], result["stuck"]) == (0, 0, 0), result
    assert not result["failures"], result["failures"]
