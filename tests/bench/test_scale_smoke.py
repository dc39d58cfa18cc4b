"""The short version of ``python -m bench.scale``: one cell (two orchestrator
processes sharing 4 partitions, the breaker and a worker process) against the
session's broker, a handful of runs, and the footprint those runs left on the log.
Its figures are the benchmark's to judge; this test checks that every run finishes,
that each component's CPU is counted, and that the log is read to its end."""

from __future__ import annotations

from typing import Any

import pytest

from bench._scale_footprint import per_run, topic_footprint
from bench.scale import Cell, ScaleStack, measure_cell

pytestmark = [pytest.mark.kafka]


@pytest.mark.timeout(600)
def test_one_cell_finishes_its_runs_and_counts_each_components_cpu(kafka_config: dict[str, Any]) -> None:
    stack = ScaleStack({**kafka_config, "log_level": 3}, Cell(orchestrators=2, partitions=4), workers=1,
                       broker_pids=[])
    try:
        assert len(stack.pids["orchestrator"]) == 2 and len(stack.pids["breaker"]) == 1
        result = measure_cell(stack, light_runs=4, rate=20.0, burst=12)  # waits for every run's result
    finally:
        stack.close()
    assert (result["orchestrators"], result["partitions"], result["runs"]) == (2, 4, 8 + 4 + 12)
    assert result["orchestrators_assigned"] == 2  # both instances own partitions, one group
    for phase in ("cpu_ms_per_run_light", "cpu_ms_per_run_saturated"):
        cpu = result[phase]
        assert cpu["orchestrator"] > 0 and cpu["workers"] > 0 and cpu["submitter"] > 0, cpu
        assert cpu["broker"] == 0.0, cpu  # the session's broker is not this bench's to count
    assert result["saturated_tasks_per_s"] > 0 and result["light_p99_ms"] >= result["light_p50_ms"]

    footprint = per_run(topic_footprint(kafka_config, stack.topics), result["runs"])
    # Each run's events: at least its submit, its end and each of its 4 tasks' success,
    # written in the orchestrator's transactions (a commit marker per partition written).
    assert footprint["events"]["records"] >= 6 and footprint["events"]["markers"] > 0, footprint
    assert footprint["commands"]["records"] >= 1 + 4, footprint  # the submit and each task's completion
