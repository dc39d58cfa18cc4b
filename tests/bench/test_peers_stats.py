"""bench.peers' arithmetic: percentiles, a phase's figures, spreads, the last-line
JSON, and CPU time read from /proc for process trees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from bench._peers_stats import (
    PhaseResult,
    SystemFigures,
    cpu_seconds,
    percentile,
    phase_result,
    process_tree,
    spread,
    summary_json,
)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.5) == 51
    assert percentile(values, 0.99) == 100
    assert percentile(values, 0.0) == 1
    assert percentile([7.0], 0.99) == 7
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_phase_result_measures_from_submit_to_the_last_tasks_end() -> None:
    submitted = [100.0, 100.5, 101.0, 101.5]
    ended = [100.02, 100.53, 101.04, 102.0]  # the last run took 500 ms
    result = phase_result(submitted, ended, tasks_per_run=4, cpu_seconds=0.2)
    assert result.runs == 4
    assert result.tasks_per_s == pytest.approx(16 / 2.0)  # 16 tasks from 100.0 to 102.0
    assert result.p50_ms == pytest.approx(40)
    assert result.p99_ms == pytest.approx(500)
    assert result.cpu_ms_per_run == pytest.approx(50)


def test_phase_result_refuses_mismatched_times() -> None:
    with pytest.raises(ValueError):
        phase_result([1.0, 2.0], [1.5], tasks_per_run=4, cpu_seconds=0)


def test_spread_is_median_with_range() -> None:
    value = spread([3.0, 1.0, 2.0])
    assert (value.median, value.low, value.high) == (2.0, 1.0, 3.0)
    assert str(value) == "2.0 [1.0-3.0]"


def _phase(tasks_per_s: float, p50: float, p99: float, cpu: float) -> PhaseResult:
    return PhaseResult(runs=10, tasks_per_s=tasks_per_s, p50_ms=p50, p95_ms=p50, p99_ms=p99, cpu_ms_per_run=cpu)


def test_summary_json_has_the_issue_keys_per_system_or_its_error() -> None:
    figures = SystemFigures(saturated=[_phase(300, 90, 200, 20), _phase(100, 80, 150, 30), _phase(200, 70, 100, 10)],
                            light=[_phase(80, 21, 33, 27), _phase(80, 25, 40, 29), _phase(80, 20, 30, 25)],
                            idle_cpu_ms_per_s=12.5)
    line = summary_json({"restate": figures, "celery": "redis-server not found: apt-get install redis-server"})
    assert line["restate_tasks_per_s"] == 200
    assert line["restate_p50_ms_light"] == 21
    assert line["restate_p99_ms_light"] == 33
    assert line["restate_cpu_ms_per_run"] == 20
    assert line["restate_cpu_ms_per_run_light"] == 27
    assert line["restate_idle_cpu_ms_per_s"] == 12.5
    ranges = line["restate_range"]
    assert isinstance(ranges, dict) and ranges["tasks_per_s"] == [100, 300]
    assert str(line["celery_error"]).startswith("redis-server not found")
    assert not any(key.startswith("celery_") and key != "celery_error" for key in line)
    json.dumps(line)  # one JSON object, as printed on the last line


def test_summary_json_gives_the_submitters_sweep_and_its_best() -> None:
    figures = SystemFigures(saturated=[_phase(300, 90, 200, 20), _phase(100, 80, 150, 30)],
                            light=[_phase(80, 21, 33, 27), _phase(80, 25, 40, 29)],
                            sweep={8: [_phase(900, 90, 200, 5), _phase(700, 90, 200, 5)]})
    line = summary_json({"taskplane": figures}, (1, 8))
    assert line["taskplane_tasks_per_s"] == 200  # the first count's phases, as before
    assert line["taskplane_tasks_per_s_by_submitters"] == {"1": 200, "8": 800}
    assert line["taskplane_tasks_per_s_best"] == 800
    assert "taskplane_tasks_per_s_best" not in summary_json({"taskplane": figures})


def test_process_tree_holds_grandchildren() -> None:
    shell = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)
    try:
        for _ in range(200):  # the shell forks its child right away; wait for it to show
            tree = process_tree([shell.pid])
            if len(tree) >= 2:
                break
            subprocess.run(["true"])
        assert shell.pid in tree and len(tree) >= 2
    finally:
        os.killpg(shell.pid, signal.SIGKILL)  # the shell and its sleep
        shell.wait()


def test_cpu_seconds_counts_the_work_of_a_process() -> None:
    burner = subprocess.Popen([sys.executable, "-c", "sum(i * i for i in range(5_000_000)); "
                               "import sys; print('done', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert burner.stdout is not None and burner.stdout.readline().strip() == "done"
        assert cpu_seconds([burner.pid]) > 0
        assert cpu_seconds([]) == 0
    finally:
        burner.kill()
        burner.wait()
