"""The limit Kafka sets: plain confluent-kafka transactional relays (read_committed
consume → produce in a transaction with send_offsets_to_transaction → commit), each in
its own process (bench._relay), chained on one broker.

    python -m bench.hop [--probes N] [--records N] [--quick]

- latency: three relays chained (t0 → t1 → t2 → t3); one probe record at a time goes in
  at t0 and is timed when it is readable (read_committed) on t1 (one hop) and on t3 (a
  3-hop chain), submit to read, in wall-clock ms;
- throughput: one relay drains N pre-produced records, at most ``batch`` per
  transaction, for each batch size; the best rate counts.

Last line: JSON with hop_p50_ms, hop_p99_ms, chain3_p50_ms, chain3_p99_ms, batched_per_s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench._peers_stats import percentile
from bench._stack import bench_stack
from taskplane.streams import kafka_clients
from taskplane.streams.topics import Topics, TopicSpec, ensure_topics

ROOT = Path(__file__).resolve().parent.parent
WARMUP_PROBES = 10  # the first transactions of a fresh producer are slower; not counted


class Relay:
    """A relay process; ``start`` returns once its consumer has its partitions."""

    def __init__(self, bootstrap: str, source: str, sink: str, batch: int, linger_ms: int,
                 expect: int | None = None) -> None:
        command = [sys.executable, "-m", "bench._relay", "--bootstrap", bootstrap, "--source", source,
                   "--sink", sink, "--batch", str(batch), "--linger-ms", str(linger_ms)]
        if expect is not None:
            command += ["--expect", str(expect)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"relay did not start (exit {self.process.poll()}): {line!r}")

    def result(self, timeout_s: float) -> dict[str, Any]:
        out, _ = self.process.communicate(timeout=timeout_s)
        return dict(json.loads(out.strip().splitlines()[-1]))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def measure_latency(kafka: dict[str, Any], topics: Topics, probes: int) -> tuple[list[float], list[float]]:
    """(one-hop ms, three-hop ms) for each probe after the warm-up ones."""
    names = [topics.name(f"t{i}") for i in range(4)]
    bootstrap = kafka["bootstrap.servers"]
    relays = [Relay(bootstrap, names[i], names[i + 1], batch=100, linger_ms=0) for i in range(3)]
    producer = Producer({**kafka, "linger.ms": 0, "enable.idempotence": True})
    reader = Consumer({**kafka, "group.id": f"hop-{uuid.uuid4().hex[:6]}", "isolation.level": "read_committed",
                       "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    reader.assign([TopicPartition(names[1], 0, 0), TopicPartition(names[3], 0, 0)])
    one_hop: list[float] = []
    three_hops: list[float] = []
    try:
        for relay in relays:
            relay.wait_ready()
        for probe in range(WARMUP_PROBES + probes):
            key = str(probe).encode()
            sent_ns = time.time_ns()
            producer.produce(names[0], b"probe", key)
            producer.flush(30)
            arrived: dict[str, int] = {}
            deadline = time.monotonic() + 60
            while len(arrived) < 2:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"probe {probe} did not come through the relays within 60 s")
                record = reader.poll(0.5)
                if record is not None and record.error() is None and record.key() == key:
                    arrived[record.topic()] = time.time_ns()
            if probe >= WARMUP_PROBES:
                one_hop.append((arrived[names[1]] - sent_ns) / 1e6)
                three_hops.append((arrived[names[3]] - sent_ns) / 1e6)
    finally:
        for relay in relays:
            relay.stop()
        reader.close()
    return one_hop, three_hops


def produce_records(kafka: dict[str, Any], topic: str, count: int) -> None:
    producer = kafka_clients.producer(kafka, durable=False, linger_ms=20,
                                      tuning={"batch.num.messages": 10_000, "queue.buffering.max.messages": 2_000_000})
    value = b"x" * 100
    for seq in range(count):
        while True:
            try:
                producer.produce(topic, value, str(seq % 1_000).encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)


def measure_batched(kafka: dict[str, Any], topics: Topics, records: int, batches: list[int]) -> dict[int, float]:
    """Records/s of one relay draining ``records`` at most ``batch`` per transaction."""
    source = topics.name("batched-in")
    produce_records(kafka, source, records)
    rates: dict[int, float] = {}
    for batch in batches:
        relay = Relay(kafka["bootstrap.servers"], source, topics.name(f"batched-out-{batch}"), batch=batch,
                      linger_ms=5, expect=records)
        try:
            relay.wait_ready()
            figures = relay.result(600)
        finally:
            relay.stop()
        rates[batch] = figures["records"] / figures["seconds"]
        print(f"batched relay, {batch} per transaction: {rates[batch]:,.0f} records/s", flush=True)
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=300, help="latency probes, one at a time")
    parser.add_argument("--records", type=int, default=200_000, help="records the batched relay drains")
    parser.add_argument("--quick", action="store_true", help="60 probes, 30,000 records, one batch size")
    args = parser.parse_args(argv)
    for flag in ("probes", "records"):
        if getattr(args, flag) < 1:
            print(f"error: --{flag}: must be at least 1", file=sys.stderr)
            raise SystemExit(2)
    probes, records, batches = (60, 30_000, [1_000]) if args.quick else (args.probes, args.records, [100, 1_000, 5_000])
    with bench_stack() as stack:
        kafka = {**stack, "log_level": 3}
        topics = Topics(f"benchhop{uuid.uuid4().hex[:6]}")
        specs = [TopicSpec(f"t{i}", 1) for i in range(4)]
        specs += [TopicSpec("batched-in", 4), *(TopicSpec(f"batched-out-{b}", 4) for b in batches)]
        ensure_topics(kafka_clients.admin(kafka), topics, specs)
        one_hop, three_hops = measure_latency(kafka, topics, probes)
        print(f"one hop: p50 {percentile(one_hop, 0.5):.1f} ms, p99 {percentile(one_hop, 0.99):.1f} ms; "
              f"3-hop chain: p50 {percentile(three_hops, 0.5):.1f} ms, p99 {percentile(three_hops, 0.99):.1f} ms",
              flush=True)
        rates = measure_batched(kafka, topics, records, batches)
    best = max(rates, key=lambda batch: rates[batch])
    print(json.dumps({
        "probes": probes, "hop_p50_ms": round(percentile(one_hop, 0.5), 1),
        "hop_p99_ms": round(percentile(one_hop, 0.99), 1),
        "chain3_p50_ms": round(percentile(three_hops, 0.5), 1),
        "chain3_p99_ms": round(percentile(three_hops, 0.99), 1),
        "batched_per_s": round(rates[best]), "batched_best_batch": best, "batched_records": records,
        "batched_by_batch": {str(batch): round(rate) for batch, rate in rates.items()},
    }))


if __name__ == "__main__":
    main()
