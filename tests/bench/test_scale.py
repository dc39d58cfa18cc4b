"""bench.scale's arithmetic: the cells it plans, the CPU per run it reports, its notes
on a machine with fewer cores than busy processes, and the footprint per run."""

from __future__ import annotations

import pytest

from bench._scale_footprint import per_run, record_bytes
from bench.scale import Cell, busy_processes, cpu_ms_per_run, notes, parse_counts, plan_cells


def test_the_full_plan_measures_every_pair_and_quick_the_diagonal() -> None:
    full = plan_cells((1, 2, 4), (4, 8, 16), quick=False)
    assert len(full) == 9 and len(set(full)) == 9
    assert full[:3] == [Cell(1, 4), Cell(2, 4), Cell(4, 4)]  # one partition count's instances side by side
    assert plan_cells((1, 2, 4), (4, 8, 16), quick=True) == [Cell(1, 4), Cell(2, 8), Cell(4, 16)]
    assert plan_cells((1, 2), (4, 8, 16), quick=True) == [Cell(1, 4), Cell(2, 8)]


def test_counts_are_parsed_sorted_once_each_and_bad_ones_named() -> None:
    assert parse_counts("4, 1,2,4", "--orchestrators") == (1, 2, 4)
    for bad in ("", "0", "two", "1,-2"):
        with pytest.raises(ValueError, match="--partitions"):
            parse_counts(bad, "--partitions")


def test_cpu_per_run_names_the_submitter_and_sums_every_component() -> None:
    spent = {"self": 0.5, "orchestrator": 1.0, "breaker": 0.1, "workers": 2.0, "broker": 1.5}
    table = cpu_ms_per_run(spent, runs=100)
    assert table == {"orchestrator": 10.0, "breaker": 1.0, "workers": 20.0, "broker": 15.0, "submitter": 5.0,
                     "total": 51.0}
    # An external broker: no broker processes, its column 0, never missing.
    assert cpu_ms_per_run({"self": 0.1, "workers": 0.2}, runs=10)["broker"] == 0.0
    with pytest.raises(ValueError):
        cpu_ms_per_run(spent, runs=0)


def test_cells_with_more_busy_processes_than_cores_are_called_contention() -> None:
    # 4 instances on 4 partitions + breaker + 2 workers + broker + submitter
    assert busy_processes(Cell(4, 4), workers=2, external_broker=False) == 9
    assert busy_processes(Cell(4, 2), workers=2, external_broker=True) == 6  # two stand by
    said = " ".join(notes([Cell(1, 4), Cell(4, 2)], workers=2, cores=2, external_broker=False))
    assert "contention for 2 cores" in said and "1x4, 4x2" in said
    assert "4x2: more instances than partitions" in said
    roomy = " ".join(notes([Cell(1, 4)], workers=1, cores=64, external_broker=False))
    assert "contention" not in roomy


def test_footprint_per_run_counts_records_bytes_and_markers() -> None:
    assert record_bytes(b"key", b"value", [("h", b"12"), ("empty", None)]) == 3 + 5 + 1 + 2 + 5
    assert record_bytes(None, None, None) == 0
    table = per_run({"events": (180, 50_000, 200), "commands": (90, 27_000, 90)}, runs=10)
    assert table["events"] == {"records": 18.0, "bytes": 5000.0, "markers": 2.0}
    assert table["commands"]["markers"] == 0.0
    assert table["all"] == {"records": 27.0, "bytes": 7700.0, "markers": 2.0}
