"""The simulator's faithfulness contract, on every example: without faults a run gives
the same events (ids and times aside: ``taskplane.testing.simulation.compare``) in
``taskplane simulate`` as through the real broker, orchestrator and a worker process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskplane._examples import SYSTEMS, system_dir, tools_module
from taskplane._examples import manifest_path as example_manifest
from taskplane.contract import messages as m
from taskplane.testing import simulate
from taskplane.testing.simulation.compare import differences, shape
from tests.e2e.e2e_pipeline import Pipeline

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
RUNS = 3


def _inputs(system: str) -> list[Any]:
    lines = (system_dir(system) / "runs.jsonl").read_text().splitlines()
    payloads = [json.loads(line) for line in lines if line.strip()]
    if system == "document-pipeline":  # the checkout's relative folder, for a worker started anywhere
        payloads = [{"folder": str(ROOT / payload["folder"])} for payload in payloads]
    return [payloads[i % len(payloads)] for i in range(RUNS)]


def _simulated(system: str, folder: Path) -> list[dict[str, list[tuple[Any, ...]]]]:
    inputs = folder / "runs.jsonl"
    inputs.write_text("".join(json.dumps(payload) + "\n" for payload in _inputs(system)))
    report = simulate(example_manifest(system), str(system_dir(system) / "tools.py"), inputs, seed=1,
                      faults="none", keep_results=True)
    assert report.ok, report.failure and report.failure.violations
    result = report.results[0]
    return [shape(e.event for e in result.events_of(run.run_id)) for run in result.runs]


@pytest.mark.parametrize("system", SYSTEMS)
def test_without_faults_a_simulated_run_has_the_real_brokers_events(pipeline: Pipeline, fakepay: str,
                                                                     system: str, tmp_path: Path) -> None:
    plan = pipeline.define(example_manifest(system).read_text())
    pipeline.worker("w1", {system: tools_module(system)})
    runs = [pipeline.publisher.submit_run(plan, payload) for payload in _inputs(system)]
    pipeline.publisher.flush()
    pipeline.wait(lambda log: len({e.run_id for e in log.events(m.RunSucceeded)} & set(runs)) == RUNS, 60)
    real = [shape(e for e in pipeline.log.all_events() if getattr(e, "run_id", None) == run_id) for run_id in runs]

    simulated = _simulated(system, tmp_path)
    assert set(real[0]) == {"(run)", *(agent.name for agent in plan.agents)}
    for index, (ours, theirs) in enumerate(zip(simulated, real, strict=True)):
        assert ours == theirs, f"run {index}: " + "; ".join(differences(ours, theirs))
