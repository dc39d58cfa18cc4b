"""Orchestrator throughput on the seeds' document pipeline, in process and through
the real broker with the transactional runtime, in one run.

Each run is the full happy path a worker pool would drive: SubmitRun, then per
task ClaimTask, two RecordToolCall, CompleteTask (17 commands a run). Epochs are
deterministic (1 for a first lease), so the whole command stream is generated up
front and produced before the processor starts.

    python -m bench.orchestrator [--runs N] [--quick]

Last line: JSON with inprocess_commands_per_s and broker_commands_per_s.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

from bench._stack import bench_stack
from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import (
    ClaimTask,
    CompleteTask,
    RecordToolCall,
    SubmitRun,
)
from taskplane.contract.plan import (
    AgentPlan,
    ExecutionPolicy,
    Isolation,
    SystemPlan,
    ToolPlan,
)
from taskplane.processors.orchestrator.app import orchestrator_runtime
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.streams import kafka_clients
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import Serde, new_meta
from taskplane.streams.topics import Topics, catalog, ensure_topics


def document_pipeline() -> SystemPlan:
    def agent(name: str, tool: str, *deps: str) -> AgentPlan:
        return AgentPlan(name, "gpt-4", (ToolPlan(tool, 30_000, 0, Isolation.NONE, 5, 60_000),), deps)

    return SystemPlan(
        "document-pipeline",
        "bench",
        (
            agent("parser", "document.extract"),
            agent("validator", "schema.validate", "parser"),
            agent("summarizer", "text.summarize", "parser"),
            agent("publisher", "database.store", "validator", "summarizer"),
        ),
        ExecutionPolicy(),
    )


def run_commands(plan: SystemPlan, run_id: str) -> list[Any]:
    commands: list[Any] = [SubmitRun(run_id, plan, '{"path": "docs/"}')]
    for agent in plan.agents:  # topological order as declared
        worker = f"w-{agent.name}"
        commands.append(ClaimTask(run_id, agent.name, 1, worker))
        for index in range(2):
            tool = agent.tools[0].name
            key = f"{run_id}/{agent.name}/{tool}/{index}"
            commands.append(RecordToolCall(run_id, agent.name, worker, 1, key, tool, index, True, '{"ok": true}'))
        commands.append(CompleteTask(run_id, agent.name, worker, 1, '{"done": true}'))
    return commands


def inprocess(plan: SystemPlan, runs: int) -> tuple[float, int]:
    runner = InMemoryRunner.of(OrchestratorDecider())
    streams = [run_commands(plan, f"run-{i}") for i in range(runs)]
    count = sum(len(s) for s in streams)
    started = time.perf_counter()
    at = 1_000
    for commands in streams:
        for command in commands:
            at += 1
            runner.handle(command.run_id, command, at)
    elapsed = time.perf_counter() - started
    succeeded = sum(1 for s in runner.states.values() if s is not None and s.status.value == "succeeded")
    assert succeeded == runs, f"only {succeeded} of {runs} runs succeeded in process"
    return count / elapsed, count


class _Done(RuntimeObserver):
    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.succeeded = 0
        self.first = 0.0
        self.last = 0.0
        self.records = 0
        self.finished = threading.Event()

    def batch(self, processor: str, records: int, seconds: float) -> None:
        if not self.first:
            self.first = time.perf_counter() - seconds
        self.records += records
        self.last = time.perf_counter()

    def event(self, processor: str, event: object) -> None:
        if type(event).__name__ == "RunSucceeded":
            self.succeeded += 1
            if self.succeeded >= self.runs:
                self.finished.set()


def through_broker(kafka: dict[str, Any], plan: SystemPlan, runs: int) -> tuple[float, int]:
    topics = Topics(f"benchorch{uuid.uuid4().hex[:6]}")
    ensure_topics(kafka_clients.admin(kafka), topics, catalog())
    serde = Serde()
    producer = kafka_clients.producer(kafka, durable=False, linger_ms=20, partitioner="murmur2_random",
                                      tuning={"queue.buffering.max.messages": 2_000_000})
    count = 0
    now = int(time.time() * 1000)
    for i in range(runs):
        run_id = uuid.uuid4().hex
        for command in run_commands(plan, run_id):
            value = serde.encode(command, new_meta(run_id, type(command).__name__, now))
            while True:
                try:
                    producer.produce(topics.commands, value, run_id, timestamp=now)
                    break
                except BufferError:
                    producer.poll(0.05)
            count += 1
        if i % 500 == 0:
            print(f"  produced {i}/{runs} runs", flush=True)
    producer.flush(60)
    observer = _Done(runs)
    runtime = orchestrator_runtime(kafka, topics, RuntimeSettings(instance_id="bench"), observer=observer)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    if not observer.finished.wait(600):
        raise SystemExit(f"only {observer.succeeded} of {runs} runs succeeded through the broker")
    runtime.stop()
    thread.join(30)
    return observer.records / (observer.last - observer.first), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5_000)
    parser.add_argument("--quick", action="store_true", help="1,000 runs, for smoke checks")
    args = parser.parse_args()
    runs = 1_000 if args.quick else args.runs
    plan = document_pipeline()
    local_rate, local_count = inprocess(plan, runs)
    print(f"in process: {local_count} commands, {local_rate:,.0f} commands/s", flush=True)
    with bench_stack() as kafka:
        broker_rate, broker_count = through_broker(kafka, plan, runs)
    print(f"through the broker: {broker_count} commands, {broker_rate:,.0f} commands/s", flush=True)
    print(json.dumps({"runs": runs, "commands_per_run": local_count // runs,
                      "inprocess_commands_per_s": round(local_rate), "broker_commands_per_s": round(broker_rate)}))


if __name__ == "__main__":
    main()
