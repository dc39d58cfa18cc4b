"""Cost that does not grow with history: the orchestrator's memory, changelog and
restore time after more and more finished runs, through the real runtime.

Runs of the seeds' document pipeline (17 commands each, generated as bench.orchestrator
does) are fed in waves of ``--wave`` runs, so the work in flight stays the same while
the history grows. Tool-call keys are made as workers make them. The orchestrator runs as its own process with short retentions
(finished runs retire after 1 s, are forgotten after 2 s). After each size, once every
run was forgotten and the broker's log cleaner had its turn, it measures the
orchestrator's RSS, the changelog's bytes (what a restore reads) and the restore time
of a restarted orchestrator. The changelog is created with eager compaction settings
(``BENCH_CHANGELOG``) so the cleaner's lag does not dominate a short benchmark.

    python -m bench.state [--quick]      # sizes 1k, 10k, 100k (quick: 1k, 20k)

Last line: JSON with sizes, rss_mb, changelog_mb, restore_s (one value per size) and
state_bytes_per_live_run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench._stack import bench_stack
from bench.orchestrator import run_commands
from taskplane.contract.decider import InMemoryRunner
from taskplane.contract.messages import RecordToolCall
from taskplane.contract.plan import SystemPlan
from taskplane.contract.state import RunStatus
from taskplane.processors.orchestrator.decider import OrchestratorDecider
from taskplane.streams import kafka_clients
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.publisher import Publisher
from taskplane.streams.runtime import state_meta
from taskplane.streams.serde import MAGIC, Serde, new_meta
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import compile_manifest, example_manifest
from taskplane.workers.journal import idempotency_key

BENCH_CHANGELOG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": "1000",
                   "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "0"}
RESTORED = re.compile(r"restored (\d+) keys on \[([\d, ]*)\] in ([\d.]+)s")


def commands_of(plan: SystemPlan, run_id: str) -> list[Any]:
    """bench.orchestrator's commands, with tool-call keys as workers make them."""
    return [dataclasses.replace(c, key=idempotency_key(run_id, c.task, c.tool, c.call_index, {"i": c.call_index}))
            if isinstance(c, RecordToolCall) else c for c in run_commands(plan, run_id)]


def live_state_bytes(plan: SystemPlan) -> tuple[int, int]:
    """The largest and the mean encoded snapshot of a run while it is live (in process)."""
    run_id = uuid.uuid4().hex
    runner = InMemoryRunner.of(OrchestratorDecider())
    serde, sizes = Serde(), []
    for at, command in enumerate(commands_of(plan, run_id), start=1):
        runner.handle(run_id, command, at)
        state = runner.states[run_id]
        if state is not None and state.status is RunStatus.RUNNING:
            sizes.append(len(serde.encode(runner.decider.snapshot(state), state_meta(run_id))))
    return max(sizes), round(sum(sizes) / len(sizes))


class EventCounter:
    """Counts RunSucceeded and RunForgotten on ``events`` by schema fingerprint (no decoding)."""

    def __init__(self, kafka: dict[str, Any], topic: str) -> None:
        registry = Serde().registry
        self._kinds = {MAGIC + registry.current(f"taskplane.orchestrator.{name}").fingerprint: name  # type: ignore[union-attr]
                       for name in ("RunSucceeded", "RunForgotten")}
        self.counts = {"RunSucceeded": 0, "RunForgotten": 0}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._consumer = kafka_clients.consumer(kafka, f"bench-state-{uuid.uuid4().hex}", start="earliest")
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            records = self._consumer.consume(10_000, 0.2)
            seen = [self._kinds.get(bytes(r.value()[:10])) for r in records if r.error() is None and r.value()]
            with self._changed:
                for kind in seen:
                    if kind is not None:
                        self.counts[kind] += 1
                self._changed.notify_all()
        self._consumer.close()

    def wait(self, kind: str, count: int, timeout_s: float, alive: Callable[[], str | None]) -> None:
        """Until ``count`` events of ``kind``; SystemExit on timeout or when ``alive``
        reports the orchestrator gone (its last log lines)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not self._changed.wait_for(lambda: self.counts[kind] >= count, 1.0):
                if (gone := alive()) is not None:
                    raise SystemExit(f"orchestrator exited: {gone}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {self.counts[kind]} of {count} {kind} after {timeout_s}s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Orchestrator:
    """The orchestrator as a process of its own, so its RSS is its own."""

    def __init__(self, kafka: dict[str, Any], prefix: str, log_dir: Path) -> None:
        self._args = [sys.executable, "-m", "taskplane.cli", "processor", "run", "orchestrator",
                      "--instance", "bench-state"]
        self._env = {**os.environ, "TASKPLANE_METRICS_PORT": "0", "TASKPLANE_BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
                     "TASKPLANE_TOPIC_PREFIX": prefix,
                     "TASKPLANE_ORCHESTRATOR_FINISHED_RUN_RETENTION_MS": "1000",
                     "TASKPLANE_ORCHESTRATOR_FINAL_RECORD_RETENTION_MS": "2000"}
        self._log_dir = log_dir
        self._starts = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = log_dir / "orchestrator-0.log"

    def start(self, partitions: int) -> float:
        """Start; returns the restore seconds the runtime logged for all ``partitions``."""
        self.log_path = self._log_dir / f"orchestrator-{self._starts}.log"
        self._starts += 1
        with self.log_path.open("wb") as out:
            self.process = subprocess.Popen(self._args, env=self._env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            found = RESTORED.findall(self.log_path.read_text(errors="replace"))
            restored = {int(p) for _, parts, _ in found for p in parts.split(",") if p.strip()}
            if len(restored) >= partitions:
                return sum(float(seconds) for _, _, seconds in found)
            if self.process.poll() is not None:
                raise SystemExit(f"orchestrator exited: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        raise SystemExit("orchestrator did not restore its partitions in 300s")

    def gone(self) -> str | None:
        """None while the process runs; else the end of its log."""
        if self.process is not None and self.process.poll() is None:
            return None
        return self.log_path.read_text(errors="replace")[-1500:]

    def rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        return kb / 1024

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(60)
            self.process = None


def produce_wave(producer: Producer, serde: Serde, topic: str, plan: SystemPlan, runs: int) -> None:
    now = int(time.time() * 1000)
    for _ in range(runs):
        run_id = uuid.uuid4().hex
        for command in commands_of(plan, run_id):
            value = serde.encode(command, new_meta(run_id, type(command).__name__, now))
            while True:
                try:
                    producer.produce(topic, value, run_id, timestamp=now)
                    break
                except BufferError:
                    producer.poll(0.05)
    producer.flush(60)


def changelog_bytes(kafka: dict[str, Any], topic: str) -> int:
    return sum(len(key) + len(value or b"") for _, key, value in read_to_end(kafka, topic, group_id="bench-state"))


def wait_for_compaction(kafka: dict[str, Any], topic: str, timeout_s: float) -> int:
    """Changelog bytes once the cleaner stopped shrinking it (two equal readings)."""
    deadline = time.monotonic() + timeout_s
    last = changelog_bytes(kafka, topic)
    while time.monotonic() < deadline:
        time.sleep(8)
        now = changelog_bytes(kafka, topic)
        if now == last:
            return now
        last = now
    return last


def measure(kafka: dict[str, Any], plan_definition: Any, sizes: list[int], wave: int) -> dict[str, list[float]]:
    plan = plan_definition.plan
    topics = Topics(f"benchstate{uuid.uuid4().hex[:6]}")
    specs = [dataclasses.replace(s, config=BENCH_CHANGELOG) if s.role == "orchestrator-changelog" else s
             for s in catalog()]
    ensure_topics(kafka_clients.admin(kafka), topics, specs)
    partitions = next(s.partitions for s in specs if s.role == "commands")
    with Publisher(kafka, topics) as publisher:
        publisher.define_system(plan_definition)
    serde = Serde()
    producer = kafka_clients.producer(kafka, durable=False, linger_ms=20,
                                      tuning={"queue.buffering.max.messages": 2_000_000})
    counter = EventCounter(kafka, topics.events)
    results: dict[str, list[float]] = {"rss_mb": [], "changelog_mb": [], "restore_s": []}
    with tempfile.TemporaryDirectory(prefix="bench-state-") as tmp:
        orchestrator = Orchestrator(kafka, topics.prefix, Path(tmp))
        orchestrator.start(partitions)
        done = 0
        try:
            for size in sizes:
                while done < size:
                    batch = min(wave, size - done)
                    produce_wave(producer, serde, topics.commands, plan, batch)
                    done += batch
                    counter.wait("RunSucceeded", done, 600, orchestrator.gone)
                    print(f"  {done} runs finished", flush=True)
                counter.wait("RunForgotten", done, 600, orchestrator.gone)  # past both retentions
                stored = wait_for_compaction(kafka, topics.name("orchestrator-changelog"), 120)
                rss = orchestrator.rss_mb()
                orchestrator.stop()
                restore = orchestrator.start(partitions)
                print(f"{size} runs: rss {rss:.1f} MB, changelog {stored / 1e6:.3f} MB, restore {restore:.3f}s "
                      f"(rss after restart {orchestrator.rss_mb():.1f} MB)", flush=True)
                results["rss_mb"].append(round(rss, 1))
                results["changelog_mb"].append(round(stored / 1e6, 3))
                results["restore_s"].append(round(restore, 3))
        finally:
            orchestrator.stop()
            counter.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 1k and 20k, for smoke checks")
    parser.add_argument("--wave", type=int, default=1_000, help="runs in flight at a time")
    parser.add_argument("--sizes", help="comma-separated run counts instead (e.g. 300,3000)")
    args = parser.parse_args()
    sizes = [1_000, 20_000] if args.quick else [1_000, 10_000, 100_000]
    if args.sizes:
        sizes = sorted(int(size) for size in args.sizes.split(","))
    definition = compile_manifest(example_manifest("document-pipeline").read_text())
    per_run, mean = live_state_bytes(definition.plan)
    print(f"encoded state per live run: at most {per_run} bytes, {mean} on average over its life", flush=True)
    with bench_stack() as kafka:
        results = measure(kafka, definition, sizes, args.wave)
    print(json.dumps({"sizes": sizes, **results, "state_bytes_per_live_run": per_run,
                      "state_bytes_per_live_run_mean": mean,
                      "rss_ratio": round(results["rss_mb"][-1] / results["rss_mb"][0], 3),
                      "restore_ratio": round(results["restore_s"][-1] / max(results["restore_s"][0], 1e-3), 3)}))


if __name__ == "__main__":
    main()
