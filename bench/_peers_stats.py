"""The arithmetic of bench.peers, apart from any system: percentiles, one phase's
figures from submit and end times, median [min-max] over repetitions, CPU time of
process trees from /proc, and the last-line JSON."""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SYSTEMS = ("taskplane", "restate", "celery", "dbos")
PROC = Path("/proc")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True, slots=True)
class PhaseResult:
    """One measured phase of one system: ``runs`` runs of ``tasks_per_run`` tasks."""

    runs: int
    tasks_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_ms_per_run: float
    submit_p50_ms: float = 0.0  # the submit call itself: from the call to its return
    submit_p99_ms: float = 0.0


def phase_result(submitted: Sequence[float], ended: Sequence[float], tasks_per_run: int,
                 cpu_seconds: float, submit_calls_s: Sequence[float] = ()) -> PhaseResult:
    """Figures of one phase from each run's submit time and its last task's own end
    time (wall-clock seconds, same order): latency is end − submit; throughput counts
    every task from the first submit to the last end. ``submit_calls_s``: how long
    each submit call took."""
    if len(submitted) != len(ended) or not submitted:
        raise ValueError(f"{len(submitted)} submit times for {len(ended)} end times")
    latencies_ms = [(end - start) * 1000 for start, end in zip(submitted, ended, strict=True)]
    calls_ms = [call * 1000 for call in submit_calls_s] or [0.0]
    span = max(ended) - min(submitted)
    runs = len(submitted)
    return PhaseResult(runs=runs, tasks_per_s=runs * tasks_per_run / span if span > 0 else float("inf"),
                       p50_ms=percentile(latencies_ms, 0.50), p95_ms=percentile(latencies_ms, 0.95),
                       p99_ms=percentile(latencies_ms, 0.99), cpu_ms_per_run=cpu_seconds * 1000 / runs,
                       submit_p50_ms=percentile(calls_ms, 0.50), submit_p99_ms=percentile(calls_ms, 0.99))


@dataclass(frozen=True, slots=True)
class Spread:
    """Median and range of one figure over the repetitions."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:,.1f} [{self.low:,.1f}-{self.high:,.1f}]"


def spread(values: Iterable[float]) -> Spread:
    values = list(values)
    if not values:
        raise ValueError("spread of no values")
    return Spread(statistics.median(values), min(values), max(values))


@dataclass(frozen=True, slots=True)
class SystemFigures:
    """One system over all repetitions: a saturated and a light phase each time."""

    saturated: list[PhaseResult]
    light: list[PhaseResult]
    idle_cpu_ms_per_s: float = 0.0  # CPU the system burns doing nothing (polls, ticks, heartbeats)
    extra: dict[str, float] = field(default_factory=dict)  # the peer's own figures, by name
    plain_saturated: list[PhaseResult] = field(default_factory=list)  # --keyed: the same without keys
    plain_light: list[PhaseResult] = field(default_factory=list)
    # Saturated phases with more submitter threads than the first count, by count.
    sweep: dict[int, list[PhaseResult]] = field(default_factory=dict)

    def figure(self, phase: str, name: str) -> Spread:
        results: list[PhaseResult] = getattr(self, phase)
        return spread(getattr(result, name) for result in results)


def summary_json(figures: Mapping[str, SystemFigures | str], submitters: tuple[int, ...] = ()) -> dict[str, object]:
    """The last line's object: for each system, its figures (medians, with ranges in
    ``S_range``), or ``S_error`` with why it could not run. With ``submitters`` (the
    counts swept, the first one the main phases'): ``S_tasks_per_s_by_submitters`` and
    ``S_tasks_per_s_best``."""
    line: dict[str, object] = {}
    for system, result in figures.items():
        if isinstance(result, str):
            line[f"{system}_error"] = result
            continue
        keys = {
            "tasks_per_s": ("saturated", "tasks_per_s"),
            "p50_ms_light": ("light", "p50_ms"), "p95_ms_light": ("light", "p95_ms"),
            "p99_ms_light": ("light", "p99_ms"),
            "cpu_ms_per_run": ("saturated", "cpu_ms_per_run"),
            "cpu_ms_per_run_light": ("light", "cpu_ms_per_run"),
            "p50_ms_saturated": ("saturated", "p50_ms"), "p99_ms_saturated": ("saturated", "p99_ms"),
            # the submit call: at the light rate (the call alone), and back to back
            "submit_p50_ms": ("light", "submit_p50_ms"), "submit_p99_ms": ("light", "submit_p99_ms"),
            "submit_p99_ms_saturated": ("saturated", "submit_p99_ms"),
        }
        ranges: dict[str, list[float]] = {}
        for key, (phase, name) in keys.items():
            value = result.figure(phase, name)
            digits = 2 if key.startswith("submit") else 1  # a submit call takes about a millisecond
            line[f"{system}_{key}"] = round(value.median, digits)
            ranges[key] = [round(value.low, digits), round(value.high, digits)]
        if result.plain_saturated and result.plain_light:
            plain = SystemFigures(result.plain_saturated, result.plain_light)
            for key in ("tasks_per_s", "p50_ms_light", "p99_ms_light", "submit_p50_ms", "submit_p99_ms",
                        "submit_p99_ms_saturated"):
                phase, name = keys[key]
                line[f"{system}_{key}_plain"] = round(plain.figure(phase, name).median, 2)
        if submitters:  # the sweep: each count's saturated tasks/s, and the best of them
            by_count: dict[str, float] = {str(submitters[0]): round(result.figure("saturated", "tasks_per_s").median, 1)}
            for count, phases in sorted(result.sweep.items()):
                by_count[str(count)] = round(spread(p.tasks_per_s for p in phases).median, 1)
            line[f"{system}_tasks_per_s_by_submitters"] = by_count
            line[f"{system}_tasks_per_s_best"] = max(by_count.values())
        line[f"{system}_idle_cpu_ms_per_s"] = round(result.idle_cpu_ms_per_s, 1)
        for name, figure in result.extra.items():
            line[f"{system}_{name}"] = bool(figure) if name == "keyed" else round(figure, 2)
        line[f"{system}_range"] = ranges
    return line


# ---------------------------------------------------------------- CPU of process trees


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:  # gone between listing and reading
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ")".
    return text[text.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def process_tree(roots: Iterable[int], children: Mapping[int, list[int]] | None = None) -> set[int]:
    """The roots and all their descendants that are alive now."""
    children = children_map() if children is None else children
    tree: set[int] = set()
    pending = list(roots)
    while pending:
        pid = pending.pop()
        if pid in tree:
            continue
        tree.add(pid)
        pending.extend(children.get(pid, ()))
    return tree


def cpu_seconds(roots: Iterable[int]) -> float:
    """User + system CPU of every process in the trees under ``roots``, their reaped
    children included (cutime, cstime), so a worker child that exits mid-phase still
    counts once its parent waited for it."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in process_tree(roots):
        fields = _stat_fields(pid)
        if fields is not None:  # fields[11:15]: utime, stime, cutime, cstime
            total += sum(int(value) for value in fields[11:15])
    return total / ticks
