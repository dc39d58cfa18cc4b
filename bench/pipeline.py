"""End-to-end runs through the orchestrator and real ``taskplane worker run`` processes
at their default settings: a diamond (fetch → left + right → join, one tool call each).
Per mode, side by side in one run: idle latency (one run at a time), light load
(runs submitted at a fixed rate, 20/s) and saturation (a burst), with CPU per run.

    python -m bench.pipeline [--quick] [--modes follow-on,claim] [--workers 2] [--concurrency N]

Modes: ``follow-on`` is the default worker (a completion takes the downstream tasks it
readies, granted in the same transaction); ``claim`` sets
TASKPLANE_WORKER_FOLLOW_ON_GRANTS=false (every task through ``work`` and a claim).
Runs are submitted and awaited through the public client (``taskplane.Client``).
Latency is RunSubmitted → RunSucceeded in log time (the orchestrator's decision times),
i.e. submit → the last task's CompleteTask. CPU is the workers', the broker's (when this
started it) and this process's (orchestrator and breaker threads, the submitter, the
client's reader).
Last line: JSON, the first mode's figures unprefixed (idle_p50_ms, idle_p99_ms,
light_p50_ms, light_p99_ms, saturated_tasks_per_s, cpu_ms_per_run_light, ...), the
others prefixed by the mode.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._stack import bench_stack
from taskplane import Client, RunHandle
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import ProcessorThreads, compile_manifest

TOOLS = str(Path(__file__).resolve().parent / "_pipeline_tools.py")
MODES = {"follow-on": "true", "claim": "false"}  # -> TASKPLANE_WORKER_FOLLOW_ON_GRANTS
MANIFEST = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: bench-diamond}
spec:
  agents:
    - {name: fetch, tools: [bench.echo]}
    - {name: left, tools: [bench.echo], dependencies: [fetch]}
    - {name: right, tools: [bench.echo], dependencies: [fetch]}
    - {name: join, tools: [bench.echo], dependencies: [left, right]}
  execution: {leaseTimeout: 10s}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pids: dict[str, list[int]]) -> dict[str, float]:
    """User + system CPU per group of processes (Linux /proc); ``self`` is this
    process (orchestrator and breaker threads, submitter, the client's reader)."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"self": time.process_time()}
    for group, members in pids.items():
        totals[group] = 0.0
        for pid in members:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            totals[group] += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return totals


class ModeStack:
    """One mode's stack: fresh topics, the processors in threads, worker processes."""

    def __init__(self, kafka: dict[str, Any], mode: str, workers: int, concurrency: int | None,
                 broker_pids: list[int], partitions: int = 4, prefix: str = "benchpipe") -> None:
        self.topics = Topics(f"{prefix}{uuid.uuid4().hex[:6]}")
        ensure_topics(kafka_clients.admin(kafka), self.topics, catalog(partitions))
        self.definition = compile_manifest(MANIFEST)
        self.publisher = Publisher(kafka, self.topics)
        self.publisher.define_system(self.definition)
        self.publisher.flush()
        self.pids: dict[str, list[int]] = {}  # process ids by component, for CPU accounting
        self.processors = self.start_processors(kafka)
        self.client = Client(kafka["bootstrap.servers"], topic_prefix=self.topics.prefix,
                             kafka_options={k: v for k, v in kafka.items() if k != "bootstrap.servers"})
        self.runs: dict[str, RunHandle] = {}
        env = {**os.environ, "TASKPLANE_BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
               "TASKPLANE_TOPIC_PREFIX": self.topics.prefix, "TASKPLANE_WORKER_FOLLOW_ON_GRANTS": MODES[mode]}
        command = [str(Path(sys.executable).parent / "taskplane"), "worker", "run", "--system",
                   self.definition.name, "--module", TOOLS]
        if concurrency is not None:
            command += ["--concurrency", str(concurrency)]
        log_dir = Path(tempfile.mkdtemp(prefix="taskplane-bench-pipeline-"))
        self.workers = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                         stderr=(log_dir / f"w{i}.log").open("ab"), start_new_session=True)
                        for i in range(workers)]
        self.pids.update(workers=[w.pid for w in self.workers], broker=broker_pids)

    def start_processors(self, kafka: dict[str, Any]) -> Any:
        """The orchestrator and the other processors (``check()``, ``stop()``): threads of
        this process here; bench.scale starts them as processes."""
        return ProcessorThreads(kafka, self.topics, None).start()

    def submit(self, tag: str) -> str:
        run = self.client.submit(self.definition.name, {"tag": tag})
        self.runs[run.run_id] = run
        return run.run_id

    def submit_many(self, tags: list[str]) -> list[str]:
        runs = self.client.submit_many(self.definition.name, [{"tag": tag} for tag in tags])
        self.runs.update((run.run_id, run) for run in runs)
        return [run.run_id for run in runs]

    def wait(self, run_ids: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for run_id in run_ids:
            self.processors.check()
            self.runs[run_id].result(timeout=max(0.0, deadline - time.monotonic()))

    def spans(self, run_ids: list[str]) -> list[tuple[int, int]]:
        """(submitted, succeeded) log times of each run."""
        infos = [self.runs[run_id].status() for run_id in run_ids]
        return [(info.submitted_ms or 0, info.finished_ms or 0) for info in infos]

    def close(self) -> None:
        for worker in self.workers:
            worker.terminate()
        for worker in self.workers:
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
        self.processors.stop()
        self.client.close()
        self.publisher.flush()


def measured(stack: ModeStack, runs: Callable[[], list[str]]) -> tuple[list[tuple[int, int]], dict[str, float]]:
    """Run a phase; returns its runs' spans and the CPU seconds each group spent."""
    before = cpu_seconds(stack.pids)
    run_ids = runs()
    stack.wait(run_ids, 600)
    after = cpu_seconds(stack.pids)
    return stack.spans(run_ids), {group: after[group] - before[group] for group in after}


def per_run_ms(cpu: dict[str, float], runs: int) -> dict[str, float]:
    return {group: round(1000 * seconds / runs, 1) for group, seconds in cpu.items()}


def measure(stack: ModeStack, idle_runs: int, light_runs: int, rate: float, burst: int) -> dict[str, Any]:
    tasks = len(stack.definition.plan.agents)
    stack.wait([stack.submit(f"warm{i}") for i in range(5)], 120)  # workers up, groups settled

    idle, _ = measured(stack, lambda: [_one(stack, f"idle{i}") for i in range(idle_runs)])
    idle_ms = [float(done - sub) for sub, done in idle]
    print(f"  idle: {idle_runs} runs one at a time, p50 {percentile(idle_ms, 0.5):.0f} ms", flush=True)

    light, light_cpu = measured(stack, lambda: paced(stack, light_runs, rate))
    light_ms = [float(done - sub) for sub, done in light]
    print(f"  light: {light_runs} runs at {rate:g}/s, p50 {percentile(light_ms, 0.5):.0f} "
          f"p99 {percentile(light_ms, 0.99):.0f} ms, CPU ms/run {per_run_ms(light_cpu, light_runs)}", flush=True)

    saturated, saturated_cpu = measured(stack, lambda: flood(stack, burst))
    span_s = (max(d for _, d in saturated) - min(s for s, _ in saturated)) / 1000
    saturated_ms = [float(done - sub) for sub, done in saturated]
    print(f"  saturated: {burst} runs in {span_s:.1f}s ({burst * tasks / span_s:.0f} tasks/s), "
          f"CPU ms/run {per_run_ms(saturated_cpu, burst)}", flush=True)
    return {
        "idle_p50_ms": round(percentile(idle_ms, 0.5)), "idle_p99_ms": round(percentile(idle_ms, 0.99)),
        "light_p50_ms": round(percentile(light_ms, 0.5)), "light_p99_ms": round(percentile(light_ms, 0.99)),
        "saturated_runs_per_s": round(burst / span_s, 1), "saturated_tasks_per_s": round(burst * tasks / span_s, 1),
        "saturated_p50_ms": round(percentile(saturated_ms, 0.5)),
        "cpu_ms_per_run_light": round(1000 * sum(light_cpu.values()) / light_runs, 1),
        "cpu_ms_per_run_saturated": round(1000 * sum(saturated_cpu.values()) / burst, 1),
    }


def paced(stack: ModeStack, runs: int, rate: float, tag: str = "light") -> list[str]:
    """Open loop: run i is submitted at i / rate s, whatever the earlier ones are doing."""
    started, run_ids = time.monotonic(), []
    for i in range(runs):
        time.sleep(max(0.0, started + i / rate - time.monotonic()))
        run_ids.append(stack.submit(f"{tag}{i}"))
    return run_ids


def flood(stack: ModeStack, burst: int, tag: str = "burst") -> list[str]:
    """A saturating burst: one delivery for the whole burst."""
    return stack.submit_many([f"{tag}{i}" for i in range(burst)])


def _one(stack: ModeStack, tag: str) -> str:
    run_id = stack.submit(tag)
    stack.wait([run_id], 60)
    return run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="follow-on,claim", help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--idle-runs", type=int, default=30)
    parser.add_argument("--light-runs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="runs/s of the light load")
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=None, help="per worker (default: the worker's)")
    parser.add_argument("--quick", action="store_true", help="10 idle runs, 40 light, a burst of 150")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        parser.exit(2, f"--modes: unknown mode {unknown[0] if unknown else '(none)'!r}; choose from {list(MODES)}\n")
    idle_runs, light_runs, burst = (10, 40, 150) if args.quick else (args.idle_runs, args.light_runs, args.burst)
    figures: dict[str, Any] = {"workers": args.workers, "concurrency": args.concurrency or "default",
                               "light_rate_per_s": args.rate}
    broker_pids: list[int] = []
    with bench_stack(broker_pids) as kafka:
        for index, mode in enumerate(modes):
            print(f"{mode}:", flush=True)
            stack = ModeStack({**kafka, "log_level": 3}, mode, args.workers, args.concurrency, broker_pids)
            try:
                result = measure(stack, idle_runs, light_runs, args.rate, burst)
            finally:
                stack.close()
            prefix = "" if index == 0 else mode.replace("-", "_") + "_"
            figures.update({prefix + key: value for key, value in result.items()})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
