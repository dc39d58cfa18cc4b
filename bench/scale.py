"""How taskplane scales on this machine: saturated tasks/s and light-load latency with
1, 2 and 4 orchestrator instances over 4, 8 and 16 partitions, and each component's
CPU per run.

    python -m bench.scale [--quick] [--orchestrators 1,2,4] [--partitions 4,8,16]

One real broker for the whole bench; each cell gets a fresh TASKPLANE_TOPIC_PREFIX with
its partition count (`catalog(P)`, what `taskplane topics create --partitions P` makes),
its own `taskplane processor run orchestrator` processes (one consumer group, so the
partitions are shared among them), one `taskplane processor run breaker` and
`--workers` × `taskplane worker run`, all at their default settings. The workload is
bench.pipeline's diamond (4 tasks, one tool call each, trivial work), submitted through
the public client: light load is open loop at `--rate` runs/s, saturation one burst.
Latency is RunSubmitted → RunSucceeded in log time, as bench.pipeline measures it.
CPU per run is read from /proc for each group of processes: orchestrator (all its
instances), breaker, workers, broker (when this started it) and submitter (this
process: the client, its reader, the bench).

The first cell also counts what the runs left on each topic (records and payload bytes
per run, bench/_scale_footprint.py): docs/scaling.md builds its capacity model on them.

The machine has few cores (2 on the project host, shared): with more busy processes
than cores, the figures of the larger cells measure contention for those cores, not
what more instances would do on more machines. The JSON says so in ``notes``.
Progress goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._chaos_stack import Component
from bench._scale_footprint import per_run, topic_footprint
from bench._stack import bench_stack
from bench.pipeline import ModeStack, flood, measured, paced, percentile
from taskplane.streams import kafka_clients

GROUPS = ("orchestrator", "breaker", "workers", "broker", "submitter")
FULL = {"orchestrators": (1, 2, 4), "partitions": (4, 8, 16), "light_runs": 200, "burst": 3000}
QUICK = {"orchestrators": (1, 2, 4), "partitions": (4, 8, 16), "light_runs": 60, "burst": 600}


@dataclass(frozen=True, slots=True)
class Cell:
    orchestrators: int
    partitions: int

    @property
    def label(self) -> str:
        return f"{self.orchestrators}x{self.partitions}"


def parse_counts(text: str, flag: str) -> tuple[int, ...]:
    """``"1,2,4"`` → (1, 2, 4); ValueError naming ``flag`` for anything but positive integers."""
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"{flag}: expected comma-separated positive integers, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError(f"{flag}: expected comma-separated positive integers, got {text!r}")
    return tuple(sorted(set(counts)))


def plan_cells(orchestrators: tuple[int, ...], partitions: tuple[int, ...], quick: bool) -> list[Cell]:
    """The cells to measure. Full: every pair, partitions outer (a partition count's
    instances side by side). Quick: the diagonal, the i-th instance count on the i-th
    partition count (1x4, 2x8, 4x16): both axes move, in 1-2 minutes."""
    if quick:
        return [Cell(o, p) for o, p in zip(orchestrators, partitions, strict=False)]
    return [Cell(o, p) for p in partitions for o in orchestrators]


def cpu_ms_per_run(spent: dict[str, float], runs: int) -> dict[str, float]:
    """CPU ms per run of each component from the CPU seconds each group spent in a phase
    (bench.pipeline's ``measured``: its ``self`` is the submitter here), and their ``total``."""
    if runs <= 0:
        raise ValueError(f"runs must be positive, got {runs}")
    renamed = {("submitter" if group == "self" else group): seconds for group, seconds in spent.items()}
    table = {group: round(1000 * renamed.get(group, 0.0) / runs, 2) for group in GROUPS}
    table["total"] = round(sum(table.values()), 2)
    return table


def busy_processes(cell: Cell, workers: int, external_broker: bool) -> int:
    """Processes that work during a burst: the instances that own a partition (at most
    one per partition), the breaker, the workers, the broker, the submitter."""
    return min(cell.orchestrators, cell.partitions) + 1 + workers + (0 if external_broker else 1) + 1


def notes(cells: list[Cell], workers: int, cores: int, external_broker: bool) -> list[str]:
    """What the figures mean on this machine, for the JSON and the progress lines."""
    said = [f"{cores} cores for every process of a cell (and whatever else runs on the host: see load_avg)."]
    crowded = [c.label for c in cells if busy_processes(c, workers, external_broker) > cores]
    if crowded:
        said.append(f"cells {', '.join(crowded)} run more busy processes than cores: their tasks/s measure "
                    f"contention for {cores} cores, not what more instances add on more machines; the CPU "
                    "ms per run is the cost that scales out.")
    idle = [c.label for c in cells if c.orchestrators > c.partitions]
    if idle:
        said.append(f"cells {', '.join(idle)}: more instances than partitions, the rest stand by.")
    return said


class ScaleStack(ModeStack):
    """bench.pipeline's stack with the orchestrator instances and the breaker as
    processes (`taskplane processor run`), like a deployment's pods."""

    def __init__(self, kafka: dict[str, Any], cell: Cell, workers: int, broker_pids: list[int]) -> None:
        self.cell = cell
        self.log_dir = Path(tempfile.mkdtemp(prefix=f"taskplane-bench-scale-{cell.label}-"))
        self.kafka = kafka
        super().__init__(kafka, "follow-on", workers, None, broker_pids, partitions=cell.partitions,
                         prefix="benchscale")

    def start_processors(self, kafka: dict[str, Any]) -> _Processes:
        env = {"TASKPLANE_BOOTSTRAP_SERVERS": kafka["bootstrap.servers"], "TASKPLANE_TOPIC_PREFIX": self.topics.prefix,
               "TASKPLANE_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1"}
        names = [("orchestrator", f"orchestrator-{i}") for i in range(self.cell.orchestrators)] + [("breaker", "breaker")]
        components = [Component(name, [sys.executable, "-m", "taskplane.cli", "processor", "run", name,
                                       "--instance", label], env, self.log_dir, label) for name, label in names]
        with ThreadPoolExecutor(len(components)) as pool:  # python start-up dominates: in parallel
            list(pool.map(lambda component: component.start(120), components))
        for component in components:
            assert component.process is not None
            group = "breaker" if component.name == "breaker" else "orchestrator"
            self.pids.setdefault(group, []).append(component.process.pid)
        return _Processes(components)


class _Processes:
    """The processor processes of a cell, as bench.pipeline's stack expects them."""

    def __init__(self, components: list[Component]) -> None:
        self.components = components

    def check(self) -> None:
        dead = [c.name for c in self.components if not c.alive()]
        if dead:
            raise RuntimeError(f"died: {dead}: {self.components[0].log.parent}")

    def stop(self) -> None:
        for component in self.components:
            component.stop()


def instances_assigned(kafka: dict[str, Any], stack: ScaleStack) -> int | None:
    """Members of the orchestrators' group that hold a ``commands`` partition now (None
    when the group cannot be described): that every instance took part, not assumed."""
    group = f"{stack.topics.prefix}.orchestrator"
    try:
        admin = kafka_clients.admin(kafka)  # held until the answer: a collected client never answers
        described = admin.describe_consumer_groups([group], request_timeout=20)[group].result(timeout=30)
    except Exception as error:  # the count is a check on the cell, never a reason to lose its figures
        progress(f"could not describe {group}: {error!r}")
        return None
    return sum(1 for member in described.members
               if member.assignment and any(tp.topic == stack.topics.commands
                                            for tp in member.assignment.topic_partitions))


def wait_assigned(stack: ScaleStack, timeout_s: float = 90.0) -> int | None:
    """The instances holding a partition once every instance that can own one does
    (``min(orchestrators, partitions)``), or what holds one at ``timeout_s``: a slow
    start-up joins the group late, and a cell measured mid-rebalance measures the
    rebalance."""
    expected = min(stack.cell.orchestrators, stack.cell.partitions)
    deadline = time.monotonic() + timeout_s
    while True:
        assigned = instances_assigned(stack.kafka, stack)
        if assigned == expected or time.monotonic() >= deadline:
            if assigned != expected:
                progress(f"{stack.cell.label}: {assigned} of {expected} instances hold a partition "
                         f"after {timeout_s:.0f} s")
            return assigned
        time.sleep(0.5)


def measure_cell(stack: ScaleStack, light_runs: int, rate: float, burst: int) -> dict[str, Any]:
    tasks = len(stack.definition.plan.agents)
    # Warm-up: two runs per partition, so every instance has decided and the group settled.
    stack.wait(stack.submit_many([f"warm{i}" for i in range(2 * stack.cell.partitions)]), 180)
    assigned = wait_assigned(stack)
    light, light_cpu = measured(stack, lambda: paced(stack, light_runs, rate))
    light_ms = [float(done - sub) for sub, done in light]
    saturated, saturated_cpu = measured(stack, lambda: flood(stack, burst))
    span_s = max(0.001, (max(d for _, d in saturated) - min(s for s, _ in saturated)) / 1000)
    saturated_ms = [float(done - sub) for sub, done in saturated]
    cpu_saturated = cpu_ms_per_run(saturated_cpu, burst)
    return {
        "orchestrators": stack.cell.orchestrators, "partitions": stack.cell.partitions,
        "orchestrators_assigned": assigned,
        "saturated_tasks_per_s": round(burst * tasks / span_s, 1), "saturated_runs_per_s": round(burst / span_s, 1),
        "saturated_p50_ms": round(percentile(saturated_ms, 0.5)),
        "light_p50_ms": round(percentile(light_ms, 0.5)), "light_p99_ms": round(percentile(light_ms, 0.99)),
        "cpu_ms_per_run_light": cpu_ms_per_run(light_cpu, light_runs),
        "cpu_ms_per_run_saturated": cpu_saturated,
        # cores the cell kept busy in the burst: near the cores it got, the cell was bound by CPU
        "cores_busy_saturated": round(cpu_saturated["total"] * burst / span_s / 1000, 2),
        "runs": 2 * stack.cell.partitions + light_runs + burst,
    }


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="cells 1x4, 2x8, 4x16 only, 60 light runs, a burst of 600 (1-2 minutes)")
    parser.add_argument("--orchestrators", default=None, help="instance counts (default 1,2,4)")
    parser.add_argument("--partitions", default=None, help="partition counts (default 4,8,16)")
    parser.add_argument("--workers", type=int, default=2, help="`taskplane worker run` processes per cell")
    parser.add_argument("--rate", type=float, default=20.0, help="runs/s of the light load")
    parser.add_argument("--light-runs", type=int, default=None)
    parser.add_argument("--burst", type=int, default=None)
    args = parser.parse_args()
    shape = QUICK if args.quick else FULL
    try:
        orchestrators = parse_counts(args.orchestrators, "--orchestrators") if args.orchestrators \
            else shape["orchestrators"]
        partitions = parse_counts(args.partitions, "--partitions") if args.partitions else shape["partitions"]
    except ValueError as error:
        parser.exit(2, f"{error}\n")
    for flag, value in (("--workers", args.workers), ("--light-runs", args.light_runs), ("--burst", args.burst)):
        if value is not None and value < 1:
            parser.exit(2, f"{flag}: must be at least 1, got {value}\n")
    if args.rate <= 0:
        parser.exit(2, f"--rate: must be positive, got {args.rate:g}\n")
    light_runs, burst = args.light_runs or shape["light_runs"], args.burst or shape["burst"]
    cells = plan_cells(orchestrators, partitions, args.quick)
    cores = os.cpu_count() or 1
    external = bool(os.environ.get("TASKPLANE_BOOTSTRAP_SERVERS"))
    said = notes(cells, args.workers, cores, external)
    for note in said:
        progress(f"note: {note}")
    figures: dict[str, Any] = {"cores": cores, "load_avg_start": [round(x, 2) for x in os.getloadavg()],
                               "workers": args.workers, "light_rate_per_s": args.rate, "light_runs": light_runs,
                               "burst": burst, "cells": []}
    broker_pids: list[int] = []
    with bench_stack(broker_pids) as kafka:
        for index, cell in enumerate(cells):
            progress(f"cell {cell.label} ({cell.orchestrators} orchestrators, {cell.partitions} partitions): "
                     f"starting, load {os.getloadavg()[0]:.2f}")
            stack = ScaleStack({**kafka, "log_level": 3}, cell, args.workers, broker_pids)
            try:
                result = measure_cell(stack, light_runs, args.rate, burst)
            finally:
                stack.close()
            result["load_avg_1m"] = round(os.getloadavg()[0], 2)
            progress(f"cell {cell.label}: {result['saturated_tasks_per_s']} tasks/s saturated, light p50 "
                     f"{result['light_p50_ms']} p99 {result['light_p99_ms']} ms, CPU ms/run "
                     f"{result['cpu_ms_per_run_saturated']}")
            figures["cells"].append(result)
            if index == 0:
                figures["footprint_per_run"] = per_run(topic_footprint(kafka, stack.topics), result["runs"])
                progress(f"footprint per run: {figures['footprint_per_run']['all']}")
    figures["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    figures["notes"] = said
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
