"""bench.kafka_floor's minimal pipeline against the session's broker: each variant's
runs all come back once (a result per submit), its figures are all there, and bad
arguments exit 2. The figures are the benchmark's to judge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import kafka_floor
from bench._floor_roles import VARIANTS

pytestmark = [pytest.mark.kafka]

PLAN = kafka_floor.Plan(warmup=3, light=8, rate=20.0, idle_s=0.5, settle_s=0.0, requests_runs=0, saturated=6,
                        fresh_broker=False, timeout_s=120.0)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_variant_completes_every_run_once(kafka_config: dict[str, Any], tmp_path: Path, variant: str) -> None:
    peer = kafka_floor.FloorPeer(tmp_path, variant, {"bootstrap.servers": kafka_config["bootstrap.servers"]}, None)
    try:
        figures = kafka_floor.measure_floor(peer, PLAN)
        assert peer.client is not None
        submitted, finished = set(peer.client.submitted), set(peer.client.ends)
    finally:
        peer.stop()
    # the probe, the warm-up, two saturated phases (1 and 8 submitters) and the light phase
    assert len(submitted) == 1 + PLAN.warmup + 2 * PLAN.saturated + PLAN.light
    assert finished == submitted
    k = f"floor_{kafka_floor.key(variant)}"
    for name in ("cpu_ms_per_run_light", "stack_cpu_ms_per_run_light", "p50_ms_light", "p99_ms_light",
                 "result_p50_ms_light", "result_p99_ms_light", "idle_cpu_ms_per_s", "stack_idle_cpu_ms_per_s",
                 "runs_per_s_best"):
        assert isinstance(figures[f"{k}_{name}"], float), name
    # the session's broker is not this bench's to count; the pipeline's processes are
    assert figures[f"{k}_broker_cpu_ms_per_run_light"] == 0.0
    assert set(figures[f"{k}_cpu_ms_per_run_light_by_process"]) == {"processor", "worker", "harness"}
    assert figures[f"{k}_result_p50_ms_light"] >= figures[f"{k}_p50_ms_light"]  # read after the task ended


@pytest.mark.parametrize("argv", [["--variants", "eos,bogus"], ["--peers", "celery"], ["--runs", "0"],
                                  ["--saturated", "-1"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        kafka_floor.main(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: --")
