"""End-to-end runs through the orchestrator and real worker processes: a diamond
(fetch → left + right → join, one tool call each), run latency when idle and under a
burst, measured side by side in one run.

    python -m bench.pipeline [--burst N] [--quick]

Latency is RunSubmitted → RunSucceeded in log time. Last line: JSON with
idle_p50_ms, idle_p99_ms, burst_runs_per_s, burst_p50_ms, burst_p99_ms.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench._stack import bench_stack
from taskplane._demo_stack import (
    EventLog,
    ProcessorThreads,
    WorkerProcess,
    compile_manifest,
    worker_env,
)
from taskplane.contract.messages import RunSubmitted, RunSucceeded
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics

TOOLS = str(Path(__file__).resolve().parent / "_pipeline_tools.py")
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


def latencies(log: EventLog, run_ids: list[str]) -> list[float]:
    submitted = {e.run_id: e.submitted_ms for e in log.events(RunSubmitted)}
    done = {meta.key: meta.timestamp_ms for meta, e in log.records() if isinstance(e, RunSucceeded)}
    return [float(done[r] - submitted[r]) for r in run_ids]


def measure(kafka: dict[str, Any], idle_runs: int, burst: int, workers: int, concurrency: int) -> dict[str, Any]:
    topics = Topics(f"benchpipe{uuid.uuid4().hex[:6]}")
    ensure_topics(AdminClient(kafka), topics, catalog())
    definition = compile_manifest(MANIFEST)
    publisher = Publisher(kafka, topics)
    publisher.define_system(definition)
    publisher.flush()
    processors = ProcessorThreads(kafka, topics, None).start()
    log = EventLog(kafka, topics.events)
    env = worker_env(kafka["bootstrap.servers"], "postgresql://unused", topics.prefix)
    log_dir = Path(tempfile.mkdtemp(prefix="taskplane-bench-pipeline-"))
    pool = [WorkerProcess(f"w{i}", {definition.name: TOOLS}, env, log_dir, concurrency).start()
            for i in range(workers)]

    def run_all(run_ids: list[str], timeout_s: float) -> None:
        wanted = set(run_ids)
        log.wait_for(lambda events: wanted <= {e.run_id for e in events.events(RunSucceeded)},
                     timeout_s, also=processors.check)

    try:
        warm = [publisher.submit_run(definition.plan, {"i": i}) for i in range(3)]
        publisher.flush()
        run_all(warm, 120)  # workers up, groups settled
        print(f"warm: {len(warm)} runs", flush=True)

        idle: list[str] = []
        for i in range(idle_runs):
            idle.append(publisher.submit_run(definition.plan, {"idle": i}))
            publisher.flush()
            run_all(idle[-1:], 60)
        idle_ms = latencies(log, idle)
        print(f"idle: {idle_runs} runs one at a time, p50 {percentile(idle_ms, 0.5):.0f} ms", flush=True)

        started = time.monotonic()
        burst_ids = [publisher.submit_run(definition.plan, {"burst": i}) for i in range(burst)]
        publisher.flush()
        run_all(burst_ids, 600)
        elapsed = time.monotonic() - started
        burst_ms = latencies(log, burst_ids)
        print(f"burst: {burst} runs in {elapsed:.1f}s ({burst / elapsed:.1f} runs/s), "
              f"p50 {percentile(burst_ms, 0.5):.0f} ms", flush=True)
    finally:
        for worker in pool:
            worker.stop(10)
        processors.stop()
        log.close()
        publisher.flush()
    return {
        "workers": workers, "concurrency": concurrency, "tasks_per_run": len(definition.plan.agents),
        "idle_runs": idle_runs, "idle_p50_ms": round(percentile(idle_ms, 0.5)),
        "idle_p99_ms": round(percentile(idle_ms, 0.99)),
        "burst_runs": burst, "burst_runs_per_s": round(burst / elapsed, 1),
        "burst_tasks_per_s": round(burst * len(definition.plan.agents) / elapsed, 1),
        "burst_p50_ms": round(percentile(burst_ms, 0.5)), "burst_p99_ms": round(percentile(burst_ms, 0.99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-runs", type=int, default=30)
    parser.add_argument("--burst", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="10 idle runs and a burst of 50")
    args = parser.parse_args()
    idle_runs, burst = (10, 50) if args.quick else (args.idle_runs, args.burst)
    with bench_stack() as kafka:
        figures = measure({**kafka, "log_level": 3}, idle_runs, burst, args.workers, args.concurrency)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
