"""Seeds one after another until one breaks an invariant; that one is shrunk (fewer runs,
fewer faults) to the smallest case that still breaks it, and reported with the commands
that reproduce it."""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskplane.client.run_input import decode_input
from taskplane.contract.cron import ScheduleSpec
from taskplane.contract.plan import SystemPlan
from taskplane.exceptions import UserInputError
from taskplane.testing.simulation.faults import (
    FAULTS,
    SimulationInputError,
    format_faults,
    parse_faults,
    runs_of,
)
from taskplane.testing.simulation.result import SimulationResult, Violation
from taskplane.testing.simulation.seed import Setup, run_seed
from taskplane.workers.exceptions import WorkerError

SHRINK_TRIALS = 80  # re-simulations a shrink may take
SHRINK_SECONDS = 30.0


@dataclass(slots=True)
class Case:
    """A failing case: which runs, which faults (fault ids), what broke."""

    seed: int
    runs: list[int]
    faults: list[str]
    violations: list[Violation]
    result: SimulationResult


@dataclass(slots=True)
class Report:
    """What ``simulate()`` returns and ``taskplane simulate`` prints."""

    system: str
    seeds: list[int]
    runs: int
    faults: dict[str, float]
    passed: int = 0
    failure: Case | None = None
    minimal: Case | None = None
    command: str = ""
    minimal_command: str = ""
    runs_simulated: int = 0
    commands_decided: int = 0
    events: int = 0
    breaker_events: int = 0
    virtual_ms: int = 0
    started_ahead: int = 0
    slots_fired: int = 0  # cron slots fired (each one run), a lost commit's second firing included
    slots_skipped: int = 0
    wall_s: float = 0.0
    shrink_trials: int = 0
    results: list[SimulationResult] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.failure is None


def load_plan(manifest: str | Path) -> SystemPlan:
    return load_system(manifest)[0]


def load_system(manifest: str | Path) -> tuple[SystemPlan, tuple[ScheduleSpec, ...]]:
    """The plan, and the cron schedules ``taskplane apply`` would give the cron processor."""
    from taskplane.manifest import load_manifest

    loaded = load_manifest(Path(manifest))
    return loaded.to_plan(loaded.version()), tuple(s.to_spec() for s in loaded.spec.schedules)


def load_inputs(inputs: str | Path | None, one: str | None) -> list[Any]:
    found: list[Any] = []
    if inputs is not None:
        path = Path(inputs)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as error:
            raise UserInputError(f"--inputs: cannot read {path}: {error.strerror or error}", field="--inputs") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                found.append(decode_input(line))
            except UserInputError as error:
                raise UserInputError(f"--inputs: {path} line {number} is {error}", field="--inputs") from None
    if one is not None:
        try:
            found.append(decode_input(one))
        except UserInputError as error:
            raise UserInputError(f"--input: {error}", field="--input") from None
    if not found:
        raise UserInputError("give the runs' inputs: --inputs runs.jsonl (one JSON input a line) or --input JSON",
                             field="--inputs")
    return found


# Each is held in memory (a list of seeds, of runs, of workers' slots): past these a
# simulation is no longer seconds, and --runs 99999999999 ended in a MemoryError.
MAX_COUNTS = {"--runs": 100_000, "--seeds": 1_000_000, "--workers": 10_000, "--concurrency": 10_000}


def _check_counts(counts: dict[str, int | None]) -> None:
    for flag, value in counts.items():
        if value is not None and not 1 <= value <= MAX_COUNTS[flag]:
            raise SimulationInputError(f"{flag}: must be 1..{MAX_COUNTS[flag]}, got {value}", field=flag)


def simulate(manifest: str | Path, module: str, inputs: str | Path | None = None, *, input: str | None = None,
             runs: int | None = None, seed: int | None = None, seeds: int = 100, faults: str | None = None,
             workers: int = 3, concurrency: int = 4, only_runs: Sequence[int] | None = None,
             only_faults: Sequence[str] | None = None, shrink: bool = True, keep_results: bool = False,
             progress: Callable[[Report], None] | None = None) -> Report:
    """Simulate the system under seeded faults, seed after seed, until one breaks an
    invariant (then shrink it) or all hold. Bad input raises a ``UserInputError``.
    ``progress`` sees the report after each seed, and before a shrink (``failure`` set)."""
    started = time.perf_counter()
    plan, schedules = load_system(manifest)
    payloads = load_inputs(inputs, input)
    rates = parse_faults(faults)
    _check_counts({"--runs": runs, "--seeds": seeds, "--workers": workers, "--concurrency": concurrency})
    count = runs if runs is not None else len(payloads)
    chosen = sorted(set(only_runs)) if only_runs else list(range(count))
    if any(not 0 <= index < count for index in chosen):
        raise SimulationInputError(f"--only-runs: run indices are 0..{count - 1}", field="--only-runs")
    only = frozenset(only_faults) if only_faults is not None else None
    for fault in sorted(only or ()):  # a typo let no fault fire, silently: a different case
        if fault.partition(":")[0] not in FAULTS or not fault.partition(":")[2]:
            raise SimulationInputError(f"--only-faults: {fault!r} is not a fault id (<fault>:<where>, as a "
                                       f"failing report prints them; faults: {', '.join(FAULTS)})",
                                       field="--only-faults")
    setup = Setup(plan, module, tuple(payloads), workers, concurrency, schedules)
    seed_list = [seed] if seed is not None else list(range(seeds))
    report = Report(plan.name, seed_list, len(chosen), rates)
    base = _command(manifest, module, inputs, input, count, faults, workers, concurrency)
    for current in seed_list:
        result = _seed(setup, current, rates, chosen, only)
        _count(report, result)
        if keep_results:
            report.results.append(result)
        if result.violations:
            report.failure = Case(current, chosen, list(result.faults), result.violations, result)
            report.command = f"{base} --seed {current}" + _only(chosen, count, only)
            if progress is not None:
                progress(report)
            minimal = _shrink(setup, report, report.failure) if shrink else report.failure
            report.minimal = minimal
            report.minimal_command = f"{base} --seed {current}" + _only(minimal.runs, count, frozenset(minimal.faults))
            break
        report.passed += 1
        if progress is not None:
            progress(report)
    report.wall_s = time.perf_counter() - started
    return report


def _seed(setup: Setup, seed: int, rates: dict[str, float], runs: Sequence[int],
          only: frozenset[str] | None) -> SimulationResult:
    try:
        return run_seed(setup, seed, rates, runs, only)
    except WorkerError as error:  # the module: missing, not importable, an agent missing
        raise SimulationInputError(str(error), field="--module") from None


def _count(report: Report, result: SimulationResult) -> None:
    report.runs_simulated += len(result.runs)
    report.commands_decided += result.commands
    report.events += len(result.events)
    report.breaker_events += len(result.breaker_events)
    report.virtual_ms += result.virtual_ms
    report.started_ahead += result.started_ahead
    for record in result.cron_events:
        kind = record.kind
        if kind == "SlotFired":
            report.slots_fired += 1
        elif kind == "SlotsSkipped":
            report.slots_skipped += record.event.count


def _shrink(setup: Setup, report: Report, case: Case) -> Case:
    """Greedy: the runs the violations name with their faults, then fewer runs, then fewer
    faults, as long as an invariant of the same name still breaks."""
    deadline = time.perf_counter() + SHRINK_SECONDS
    names = {v.invariant for v in case.violations}
    best = case

    def attempt(runs: list[int], faults: list[str]) -> bool:
        nonlocal best
        if report.shrink_trials >= SHRINK_TRIALS or time.perf_counter() > deadline or not runs:
            return False
        report.shrink_trials += 1
        result = _seed(setup, case.seed, report.faults, runs, frozenset(faults))
        kept = [v for v in result.violations if v.invariant in names]
        if not kept:
            return False
        best = Case(case.seed, runs, list(result.faults), kept, result)
        return True

    index = {f"s{case.seed}-r{i}": i for i in case.runs}
    named = sorted({index[r] for v in case.violations for r in v.run_ids if r in index})
    if named and len(named) < len(case.runs):
        attempt(named, _faults_for(case.faults, named))
    chunk = len(best.runs) // 2
    while chunk >= 1:
        start = 0
        while start < len(best.runs) and len(best.runs) > 1:
            runs = best.runs[:start] + best.runs[start + chunk:]
            if not attempt(runs, _faults_for(best.faults, runs)):
                start += chunk
        chunk //= 2
    position = 0
    while position < len(best.faults):
        faults = best.faults[:position] + best.faults[position + 1:]
        if not attempt(best.runs, faults):
            position += 1
    return best


def _faults_for(faults: list[str], runs: list[int]) -> list[str]:
    """The faults of these runs, and the global ones (an outage, a skewed clock)."""
    keep = set(runs)
    return [f for f in faults if not runs_of([f]) or runs_of([f]) <= keep]


def _command(manifest: str | Path, module: str, inputs: str | Path | None, one: str | None, runs: int,
             faults: str | None, workers: int, concurrency: int) -> str:
    parts = ["taskplane", "simulate", "-f", str(manifest), "--module", module]
    if inputs is not None:
        parts += ["--inputs", str(inputs)]
    if one is not None:
        parts += ["--input", one]
    parts += ["--runs", str(runs), "--faults", format_faults(parse_faults(faults))]
    if workers != 3:
        parts += ["--workers", str(workers)]
    if concurrency != 4:
        parts += ["--concurrency", str(concurrency)]
    return shlex.join(parts)


def _only(runs: list[int], count: int, faults: frozenset[str] | None) -> str:
    text = ""
    if len(runs) != count:
        text += " --only-runs " + ",".join(map(str, runs))
    if faults is not None:
        text += " --only-faults " + shlex.quote(",".join(sorted(faults)) or "none")
    return text
