"""The processor runtime against a plain confluent-kafka transactional loop.

Both read the same pre-produced commands from one broker in the same run:
- raw: consume read_committed → produce each value unchanged → send offsets → commit;
- runtime: ProcessorRuntime with the counting decider (decode, decide, evolve,
  encode the event, changelog per batch, offsets, commit).

    python -m bench.runtime [--commands N] [--quick]

Last line: JSON with runtime_commands_per_s, raw_commands_per_s (best of the rounds),
ratio, and native_codecs (whether the C codecs ran: without a compiler at install they
fall back to generated Python, about 3x slower per record).
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench._stack import bench_stack
from bench.counter.app import PARTITIONS, counter_serde, counter_topics
from bench.counter.decider import Add, CounterDecider
from taskplane.streams import kafka_clients
from taskplane.streams.runtime import ProcessorRuntime, ProcessorSpec
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.serde import new_meta
from taskplane.streams.topics import Topics, TopicSpec, ensure_topics

KEYS = 1_000


def _specs() -> list[TopicSpec]:
    return [*counter_topics(), TopicSpec("raw-out", PARTITIONS)]


def produce_commands(kafka: dict[str, Any], topic: str, count: int) -> None:
    serde = counter_serde()
    producer = kafka_clients.producer(kafka, durable=False, linger_ms=20, partitioner="murmur2_random",
                                      tuning={"batch.num.messages": 10_000, "queue.buffering.max.messages": 2_000_000})
    now = int(time.time() * 1000)
    for seq in range(count):
        key = f"k{seq % KEYS}"
        value = serde.encode(Add(key, 1, seq), new_meta(key, "Add", now))
        while True:
            try:
                producer.produce(topic, value, key, timestamp=now)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)


def raw_loop(kafka: dict[str, Any], source: str, sink: str, count: int) -> float:
    """Commands/s of the plainest exactly-once passthrough confluent-kafka allows (its
    clients made by hand on purpose: the baseline without taskplane's settings)."""
    consumer = Consumer({**kafka, "group.id": f"raw-{uuid.uuid4().hex[:6]}", "isolation.level": "read_committed",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "queued.min.messages": 100_000, "fetch.wait.max.ms": 50})
    # Same producer tuning as the runtime's (retry backoff for back-to-back transactions).
    producer = Producer({**kafka, "transactional.id": f"raw-{uuid.uuid4().hex[:6]}", "linger.ms": 5,
                         "retry.backoff.ms": 5, "retry.backoff.max.ms": 100,
                         "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000})
    producer.init_transactions(30)
    consumer.subscribe([source])
    seen = 0
    started = 0.0
    while seen < count:
        records = consumer.consume(5_000, 0.1)
        if not records:
            continue
        if not started:
            started = time.perf_counter()
        producer.begin_transaction()
        offsets: dict[int, int] = {}
        for record in records:
            producer.produce(sink, record.value(), record.key(), record.partition())
            offsets[record.partition()] = record.offset() + 1
        producer.send_offsets_to_transaction([TopicPartition(source, p, o) for p, o in offsets.items()],
                                             consumer.consumer_group_metadata())
        producer.commit_transaction()
        seen += len(records)
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


class _Counting(RuntimeObserver):
    def __init__(self, target: int, runtime_stop: threading.Event) -> None:
        self.seen = 0
        self.first = 0.0
        self.finished = 0.0
        self.target = target
        self._done = runtime_stop

    def batch(self, processor: str, records: int, seconds: float) -> None:
        if not self.first:
            self.first = time.perf_counter() - seconds
        self.seen += records
        if self.seen >= self.target and not self.finished:
            self.finished = time.perf_counter()
            self._done.set()


def runtime_loop(kafka: dict[str, Any], topics: Topics, count: int) -> float:
    done = threading.Event()
    observer = _Counting(count, done)
    spec = ProcessorSpec(f"bench-{uuid.uuid4().hex[:6]}", "commands", "events", "changelog")
    runtime = ProcessorRuntime(CounterDecider(), spec, kafka, topics, RuntimeSettings(instance_id="bench"),
                               serde=counter_serde(), observer=observer)
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    done.wait()
    runtime.stop()
    thread.join(30)
    return observer.seen / (observer.finished - observer.first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=400_000)
    parser.add_argument("--rounds", type=int, default=3, help="best of N alternating rounds")
    parser.add_argument("--quick", action="store_true", help="one round of 50,000 commands, for smoke checks")
    args = parser.parse_args()
    count = 50_000 if args.quick else args.commands
    if args.quick:
        args.rounds = 1
    with bench_stack() as kafka:
        raws: list[float] = []
        runtimes: list[float] = []
        for round_number in range(args.rounds):
            # Each round on fresh topics; alternating keeps broker warm-up and noise off one side.
            topics = Topics(f"bench{uuid.uuid4().hex[:6]}")
            ensure_topics(kafka_clients.admin(kafka), topics, _specs())
            print(f"round {round_number + 1}: producing {count} commands over {KEYS} keys, "
                  f"{PARTITIONS} partitions", flush=True)
            produce_commands(kafka, topics.commands, count)
            raws.append(raw_loop(kafka, topics.commands, topics.name("raw-out"), count))
            print(f"  raw passthrough: {raws[-1]:,.0f} commands/s", flush=True)
            runtimes.append(runtime_loop(kafka, topics, count))
            print(f"  runtime (counting decider): {runtimes[-1]:,.0f} commands/s", flush=True)
    raw, runtime = max(raws), max(runtimes)
    print(json.dumps({"commands": count, "partitions": PARTITIONS, "rounds": args.rounds,
                      "native_codecs": counter_serde().native,
                      "raw_commands_per_s": round(raw), "runtime_commands_per_s": round(runtime),
                      "ratio": round(runtime / raw, 3),
                      "raw_rounds": [round(r) for r in raws], "runtime_rounds": [round(r) for r in runtimes]}))


if __name__ == "__main__":
    main()
