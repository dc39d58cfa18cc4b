"""Where a run's time goes: bench.peers' taskplane stack, runs one at a time.

    python -m bench.timeline [--runs 40] [--rate R]

Each step is timed from the run's submit with the records' own timestamps: the claim and
every completion are stamped by the worker that sent them, each task's end by its agent
(same host, one clock). Between two steps lie one orchestrator transaction, one consumer
hop and the worker's handling; compare with bench.hop's hop (docs/benchmarks.md, "The
wedge, repaired"). With ``--rate``, runs are submitted at R runs/s (bench.peers' light phase is
20) instead, and each step's p99 is reported too: where the light phase's tail lives.
Last line JSON: ``runs``, ``latency_p50_ms``, ``steps_p50_ms`` (and with ``--rate``,
``latency_p99_ms``, ``steps_p99_ms``)."""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from bench._peer_taskplane import TaskplanePeer
from bench._peers_stats import percentile
from taskplane.contract.messages import TaskSucceeded
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.serde import Serde
from taskplane.streams.settings import StackSettings

WARM_UP = 20


def steps(commands: Iterable[tuple[str, int, str]], ends: Iterable[tuple[str, str, float]]) -> dict[str, list[float]]:
    """Per step, its milliseconds after its run's submit, over the runs that were submitted:
    ``commands`` are (run id, timestamp ms, step), the submit's step being ``SubmitRun``;
    ``ends`` are (run id, task, the agent's end in ms), as step ``end:<task>``."""
    stamped: dict[str, list[tuple[float, str]]] = {}
    for run_id, at_ms, step in commands:
        stamped.setdefault(run_id, []).append((float(at_ms), step))
    for run_id, task, end_ms in ends:
        stamped.setdefault(run_id, []).append((end_ms, f"end:{task}"))
    out: dict[str, list[float]] = {}
    for marks in stamped.values():
        submitted = [at for at, step in marks if step == "SubmitRun"]
        if not submitted:
            continue
        for at, step in marks:
            out.setdefault(step, []).append(at - submitted[0])
    return out


def _records(kafka: dict[str, Any], topic: str) -> list[tuple[int, Any]]:
    """(timestamp ms, decoded value) of every committed record of ``topic``."""
    serde = Serde()
    reader = kafka_clients.consumer(kafka, f"timeline-{time.monotonic_ns()}", start="earliest", eof=True)
    partitions = reader.list_topics(topic, timeout=10).topics[topic].partitions
    reader.assign([TopicPartition(topic, p, 0) for p in partitions])
    records: list[tuple[int, Any]] = []
    at_end: set[int] = set()
    try:
        while len(at_end) < len(partitions):
            record = reader.poll(5.0)
            if record is None:
                break
            if record.error() is not None:
                at_end.add(record.partition())
                continue
            try:
                records.append((record.timestamp()[1], serde.decode(record.value())[1]))
            except SerdeError:
                continue
    finally:
        reader.close()
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--rate", type=float, default=None, help="runs/s (default: one at a time)")
    args = parser.parse_args(argv)
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be positive")
    peer = TaskplanePeer(StackSettings().cache_dir, Path(tempfile.mkdtemp(prefix="taskplane-bench-timeline-")))
    print("starting the taskplane stack (broker, orchestrator, breaker, 2 workers)", flush=True)
    peer.start()
    try:
        for index in range(WARM_UP):
            peer.end_times([peer.submit(index)], 30)
        latencies = _one_at_a_time(peer, args.runs) if args.rate is None else _at_rate(peer, args.runs, args.rate)
        run_ids = set(latencies)
        assert peer.kafka_config is not None and peer.topics is not None
        commands = [(c.run_id, at, type(c).__name__ + (f":{c.task}" if hasattr(c, "task") else ""))
                    for at, c in _records(peer.kafka_config, peer.topics.commands) if getattr(c, "run_id", None) in run_ids]
        ends = [(e.run_id, e.task, json.loads(e.output)["end"] * 1000)
                for _, e in _records(peer.kafka_config, peer.topics.events)
                if isinstance(e, TaskSucceeded) and e.run_id in run_ids]
    finally:
        peer.stop()
    timed = steps(commands, ends)
    medians = {step: round(statistics.median(times), 1) for step, times in timed.items()}
    tails = {step: round(percentile(times, 0.99), 1) for step, times in timed.items()}
    for step, median in sorted(medians.items(), key=lambda item: item[1]):
        print(f"{step:28s} p50 {median:7.1f} ms, p99 {tails[step]:7.1f} ms after the submit")
    runs = list(latencies.values())
    latency = round(statistics.median(runs), 1)
    how = "one at a time" if args.rate is None else f"at {args.rate:g} runs/s"
    print(f"run latency p50 {latency} ms, p99 {percentile(runs, 0.99):.1f} ms over {args.runs} runs, {how}")
    line: dict[str, Any] = {"runs": args.runs, "latency_p50_ms": latency, "steps_p50_ms": medians}
    if args.rate is not None:
        line.update(rate=args.rate, latency_p99_ms=round(percentile(runs, 0.99), 1), steps_p99_ms=tails)
    print(json.dumps(line))


def _one_at_a_time(peer: TaskplanePeer, runs: int) -> dict[str, float]:
    latencies: dict[str, float] = {}
    for index in range(runs):
        started = time.time()
        run_id = peer.submit(WARM_UP + index)
        latencies[run_id] = (peer.end_times([run_id], 30)[0] - started) * 1000
        time.sleep(0.05)  # one run at a time, and not back to back
    return latencies


def _at_rate(peer: TaskplanePeer, runs: int, rate: float) -> dict[str, float]:
    submitted: dict[str, float] = {}
    start = time.time()
    for index in range(runs):
        time.sleep(max(0.0, start + index / rate - time.time()))
        submitted_at = time.time()
        submitted[peer.submit(WARM_UP + index)] = submitted_at
    ends = peer.end_times(list(submitted), 60 + runs / rate)
    return {run_id: (end - at) * 1000 for (run_id, at), end in zip(submitted.items(), ends, strict=True)}


if __name__ == "__main__":
    main()
