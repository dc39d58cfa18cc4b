"""``taskplane simulate``: the system's real deciders and agent code under seeded faults in
virtual time; exit 1 and a reproducing seed when an invariant breaks (docs/testing.md)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from taskplane.testing.simulation.faults import FAULTS


def simulate(
    file: Annotated[Path, typer.Option("-f", "--file", help="The AgentSystem manifest.")],
    module: Annotated[str, typer.Option(help="Module or .py file defining the agents, tools and invariants.")],
    inputs: Annotated[Path | None, typer.Option(help="Run inputs, one JSON value a line (cycled to --runs).")] = None,
    input: Annotated[str | None, typer.Option("--input", help="One run input as JSON.")] = None,
    runs: Annotated[int | None, typer.Option(help="Runs per seed (default: one per input).")] = None,
    seed: Annotated[int | None, typer.Option(help="Simulate this seed only.")] = None,
    seeds: Annotated[int, typer.Option(help="Simulate seeds 0..K-1 (unless --seed).")] = 100,
    faults: Annotated[str | None, typer.Option(help="Faults by name, with an optional rate (crash,tool-error=0.1); "
                                                    "'none', or all by default: " + ", ".join(FAULTS))] = None,
    workers: Annotated[int, typer.Option(help="Simulated workers.")] = 3,
    concurrency: Annotated[int, typer.Option(help="Tasks each simulated worker runs at once.")] = 4,
    only_runs: Annotated[str | None, typer.Option(help="Only these run indices (a shrunk case).")] = None,
    only_faults: Annotated[str | None, typer.Option(help="Only these fault ids may fire (a shrunk case).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for CI.")] = False,
) -> None:
    """Run the system's real orchestrator and breaker deciders and its @agent/@tool code in
    process over a simulated log, with seeded faults; check the invariants after each seed."""
    from taskplane.testing.simulation.faults import SimulationInputError
    from taskplane.testing.simulation.report import as_json as report_json
    from taskplane.testing.simulation.report import as_text
    from taskplane.testing.simulation.runner import simulate as run

    picked_runs = None
    if only_runs is not None:
        try:
            picked_runs = [int(part) for part in only_runs.split(",") if part.strip()]
        except ValueError:
            raise SimulationInputError(f"--only-runs: {only_runs!r} is not a list of run indices",
                                       field="--only-runs") from None
    picked_faults = None
    if only_faults is not None:
        picked_faults = [] if only_faults.strip() == "none" else [f.strip() for f in only_faults.split(",") if f.strip()]
    report = run(file, module, inputs, input=input, runs=runs, seed=seed, seeds=seeds, faults=faults,
                 workers=workers, concurrency=concurrency, only_runs=picked_runs, only_faults=picked_faults,
                 progress=Progress())
    typer.echo(json.dumps(report_json(report)) if as_json else as_text(report))
    if not report.ok:
        raise typer.Exit(1)


class Progress:
    """A line on stderr every ``every_s`` while seeds run (100 seeds of 100 runs take
    15 s, silent before), and when a seed broke an invariant and its shrink starts."""

    def __init__(self, every_s: float = 2.0) -> None:
        self._every_s = every_s
        self._next = time.monotonic() + every_s

    def __call__(self, report: Any) -> None:
        if report.failure is not None:
            typer.echo(f"seed {report.failure.seed} broke an invariant; shrinking it to a minimal case...", err=True)
        elif time.monotonic() >= self._next:
            self._next = time.monotonic() + self._every_s
            typer.echo(f"{report.passed} of {len(report.seeds)} seeds held ({report.runs_simulated} runs)...",
                       err=True)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
