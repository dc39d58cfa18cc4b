"""The tracer at saturation, against a real collector (Jaeger, built once by devstack).

    python -m bench.traces [--quick] [--runs N] [--workers 2]

bench.pipeline's diamond (4 tasks, one tool call each) through the orchestrator and
real worker processes; a burst of runs submitted at once (saturation), with the tracer
as its own process (``taskplane processor run tracer``) exporting over OTLP/HTTP.
- ``spans_per_run``: the spans the log implies (the bench folds ``events`` itself).
- ``lag_p99_ms``: event committed → span received: a run's RunSucceeded visible to a
  read_committed consumer → its ``invoke_workflow`` span in Jaeger's query API (every
  5th run with --quick, every 10th otherwise; polled). ``decision_to_export_p99_ms`` is the
  tracer's own histogram, from the decision's time (a command's queueing included) to
  the collector's answer (a bucket's upper bound).
- ``missing_spans``: implied spans Jaeger's query API does not have.
- ``duplicate_spans_after_replay``: the tracer is stopped, its offsets rewound to 0
  (its export mark kept) and restarted: spans the receiver took (its own counter, every
  copy) minus distinct span ids stored.
- ``reexport_stored_duplicates``: then a tracer of a new group exports everything
  again from offset 0: span ids Jaeger's query returns more than once.
- ``cpu_share``: tracer CPU ÷ the pipeline's (workers, broker, orchestrator/breaker
  threads here) over the burst and the tracer's catch-up.
Last line: JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench._stack import bench_stack
from bench.pipeline import ModeStack, cpu_seconds, percentile
from taskplane.contract.messages import RunSucceeded
from taskplane.contract.trace_ids import trace_id_hex
from taskplane.devstack.jaeger import LocalJaeger
from taskplane.devstack.kafka import free_port
from taskplane.processors.tracer.app import LAG_BUCKETS
from taskplane.processors.tracer.spans import TraceFold
from taskplane.streams.serde import Serde
from taskplane.streams.settings import StackSettings


class TracerProcess:
    def __init__(self, kafka: dict[str, Any], prefix: str, jaeger: LocalJaeger, group: str, log_dir: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "TASKPLANE_BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
               "TASKPLANE_TOPIC_PREFIX": prefix, "TASKPLANE_METRICS_PORT": str(self.port),
               "TASKPLANE_TRACER_GROUP_ID": group, "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_http_endpoint}
        command = [str(Path(sys.executable).parent / "taskplane"), "processor", "run", "tracer",
                   "--instance", f"{group}-1"]
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                        stderr=(log_dir / f"{group}.log").open("ab"), start_new_session=True)

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return {}
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("taskplane_tracer_"):
                name, value = line.rsplit(" ", 1)
                values[name] = float(value)
        return values

    def exported(self) -> int:
        return int(self.metrics().get("taskplane_tracer_spans_total", 0))

    def lag_buckets(self) -> list[float]:
        metrics = self.metrics()
        return [metrics.get(f'taskplane_tracer_lag_seconds_bucket{{le="{bound}"}}', 0) for bound in LAG_BUCKETS] + [
            metrics.get("taskplane_tracer_lag_seconds_count", 0)]

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the tracer did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


LagQuery = LocalJaeger


class LagProbe(threading.Thread):
    """Event committed → span received: a read_committed consumer of ``events`` notes
    when each sampled run's RunSucceeded becomes visible, then Jaeger's query API is
    polled until that run's ``invoke_workflow`` span is there."""

    def __init__(self, kafka: dict[str, Any], topic: str, jaeger: LagQuery, sample_every: int) -> None:
        super().__init__(daemon=True)
        self._consumer = Consumer({**kafka, "group.id": f"bench-traces-lag-{os.getpid()}",
                                   "isolation.level": "read_committed", "enable.auto.commit": False,
                                   "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
        self._consumer.subscribe([topic])
        self._jaeger = jaeger
        self._every = sample_every
        self._halt = threading.Event()
        self.lags_ms: list[float] = []
        self.cpu_s = 0.0  # this thread's own CPU, not the pipeline's

    def run(self) -> None:
        serde, pending, seen = Serde(), {}, 0
        while not self._halt.is_set():
            for record in self._consumer.consume(500, 0.02):
                if record.error() is None:
                    meta, event = serde.decode(record.value())
                    if isinstance(event, RunSucceeded):
                        seen += 1
                        if seen % self._every == 0:
                            pending[event.run_id] = time.monotonic()
            for run_id, visible in list(pending.items()):
                if any(not s.get("references") for s in self._jaeger.trace(trace_id_hex(run_id))):
                    self.lags_ms.append((time.monotonic() - visible) * 1000)
                    del pending[run_id]
            self.cpu_s = time.thread_time()
        self._consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)


def lag_p99_ms(before: list[float], after: list[float]) -> float:
    """The p99 of the observations between two snapshots (a bucket's upper bound)."""
    counts = [a - b for a, b in zip(after, before, strict=True)]
    total = counts[-1]
    for bound, count in zip(LAG_BUCKETS, counts, strict=False):
        if count >= 0.99 * total:
            return bound * 1000
    return float("inf")


def implied_spans(kafka: dict[str, Any], topic: str) -> dict[str, set[str]]:
    """run id -> the span ids the log implies (the same fold, here)."""
    consumer = Consumer({**kafka, "group.id": f"bench-traces-{os.getpid()}", "isolation.level": "read_committed",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    fold, serde, spans = TraceFold(), Serde(), {}

    def behind() -> bool:  # positions, not record offsets: the last offset may be a commit marker
        positions = consumer.position([TopicPartition(topic, p) for p in partitions])
        return any(tp.offset < ends[tp.partition] for tp in positions)

    while behind():
        for record in consumer.consume(1000, 1.0):
            if record.error() is not None:
                continue
            meta, event = serde.decode(record.value())
            for span in fold.apply(event, meta.timestamp_ms):  # type: ignore[arg-type]
                spans.setdefault(event.run_id, set()).add(f"{span.span_id:016x}")  # type: ignore[attr-defined]
    consumer.close()
    return spans


def stored_spans(jaeger: LocalJaeger, run_ids: list[str]) -> dict[str, list[str]]:
    return {run_id: [span["spanID"].rjust(16, "0") for span in jaeger.trace(trace_id_hex(run_id))]
            for run_id in run_ids}


def wait_exported(tracer: TracerProcess, target: int, timeout_s: float) -> int:
    deadline, exported = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        exported = tracer.exported()
        if exported >= target:
            return exported
        time.sleep(0.2)
    return exported


def rewind_keeping_mark(kafka: dict[str, Any], group: str, topic: str) -> None:
    """The stopped tracer's offsets to 0, with the export mark (the metadata) kept."""
    admin = AdminClient(kafka)
    from confluent_kafka import ConsumerGroupTopicPartitions

    listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result()
    rewound = [TopicPartition(tp.topic, tp.partition, 0, metadata=tp.metadata)
               for tp in listed.topic_partitions if tp.topic == topic]
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, rewound)])[group].result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1500, help="runs of the saturated burst")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="a burst of 200 runs")
    args = parser.parse_args()
    runs = 200 if args.quick else args.runs
    figures: dict[str, Any] = {"runs": runs, "workers": args.workers}
    log_dir = Path(tempfile.mkdtemp(prefix="taskplane-bench-traces-"))
    broker_pids: list[int] = []
    with LocalJaeger(log_dir / "jaeger", cache_dir=StackSettings().cache_dir, progress=print) as jaeger, \
            bench_stack(broker_pids) as base:
        kafka = {**base, "log_level": 3}
        stack = ModeStack(kafka, "follow-on", args.workers, None, broker_pids)
        group = f"{stack.topics.prefix}.tracer"
        tracer = TracerProcess(kafka, stack.topics.prefix, jaeger, group, log_dir)
        try:
            tracer.wait_ready()
            stack.wait([stack.submit(f"warm{i}") for i in range(5)], 60)
            wait_exported(tracer, 5 * 9, 60)  # the tracer has joined its group and is exporting
            pids = {**stack.pids, "tracer": [tracer.process.pid]}
            lag_before = tracer.lag_buckets()
            probe = LagProbe(kafka, stack.topics.events, jaeger, 5 if args.quick else 10)
            probe.start()
            time.sleep(2)  # the probe's consumer is assigned (it reads from the end)
            before = cpu_seconds(pids)
            started = time.monotonic()
            run_ids = stack.submit_many([f"r{i}" for i in range(runs)])
            stack.wait(run_ids, 600)
            figures["burst_s"] = round(time.monotonic() - started, 2)
            implied = implied_spans(kafka, stack.topics.events)
            expected = sum(len(ids) for ids in implied.values())
            exported = wait_exported(tracer, expected, 120)
            after = cpu_seconds(pids)
            probe.stop()
            after["self"] -= probe.cpu_s  # the probe measures; it is not the pipeline
            used = {group_: after[group_] - before[group_] for group_ in before}
            pipeline_cpu = sum(v for k, v in used.items() if k != "tracer")
            figures["tasks_per_s"] = round(4 * runs / figures["burst_s"], 1)
            figures["spans_per_run"] = round(expected / len(implied), 2)
            figures["lag_p99_ms"] = round(percentile(probe.lags_ms, 0.99), 1) if probe.lags_ms else None
            figures["lag_p50_ms"] = round(percentile(probe.lags_ms, 0.5), 1) if probe.lags_ms else None
            figures["lag_samples"] = len(probe.lags_ms)
            # the tracer's own histogram: from the decision (a command's time, queueing included)
            figures["decision_to_export_p99_ms"] = lag_p99_ms(lag_before, tracer.lag_buckets())
            figures["cpu_share"] = round(used["tracer"] / pipeline_cpu, 4)
            figures["tracer_cpu_ms_per_run"] = round(used["tracer"] * 1000 / runs, 3)
            print(f"burst done; {exported} of {expected} spans exported", flush=True)

            stored = stored_spans(jaeger, list(implied))
            figures["missing_spans"] = sum(len(implied[r] - set(stored[r])) for r in implied)
            accepted_before = jaeger.accepted_spans()
            tracer.stop()
            rewind_keeping_mark(kafka, group, stack.topics.events)
            tracer = TracerProcess(kafka, stack.topics.prefix, jaeger, group, log_dir)
            time.sleep(10 if args.quick else 20)  # it refolds the whole log silently
            resent = jaeger.accepted_spans() - accepted_before
            distinct = sum(len(set(ids)) for ids in stored_spans(jaeger, list(implied)).values())
            figures["duplicate_spans_after_replay"] = (accepted_before + resent) - distinct
            tracer.stop()

            fresh = TracerProcess(kafka, stack.topics.prefix, jaeger, f"{group}-fresh", log_dir)
            tracer = fresh
            wait_exported(fresh, expected, 120)
            again = stored_spans(jaeger, list(implied))
            figures["reexport_spans_received"] = jaeger.accepted_spans() - accepted_before - resent
            figures["reexport_stored_duplicates"] = sum(len(ids) - len(set(ids)) for ids in again.values())
            if figures["reexport_stored_duplicates"] and os.environ.get("TASKPLANE_BENCH_DEBUG"):
                run_id = next(r for r, ids in again.items() if len(ids) > len(set(ids)))
                print(json.dumps(jaeger.trace(trace_id_hex(run_id)))[:6000])
        finally:
            tracer.stop()
            stack.close()
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
