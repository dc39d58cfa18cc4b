"""One plain confluent-kafka read-process-write transactional relay, run as its own
process by bench.hop: consume read_committed → produce each record unchanged in a
transaction → send_offsets_to_transaction → commit. Nothing of taskplane.

    python -m bench._relay --bootstrap HOST:PORT --source A --sink B [--batch N] [--linger-ms N] [--expect N]

With ``--expect N`` it exits after relaying N records and prints one JSON line
(records, seconds from the first record read to the last commit); otherwise it relays
until SIGTERM. It prints ``ready`` once its partitions are assigned.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition


def relay(bootstrap: str, source: str, sink: str, batch: int, linger_ms: int, expect: int | None) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"relay-{source}-{uuid.uuid4().hex[:6]}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100})
    # The producer tuning bench.runtime's raw loop uses: a short retry backoff, because
    # librdkafka's default (100 ms) is hit on back-to-back transactions.
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"relay-{uuid.uuid4().hex[:8]}",
                         "linger.ms": linger_ms, "retry.backoff.ms": 5, "retry.backoff.max.ms": 100,
                         "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000})
    producer.init_transactions(30)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)

    def assigned(_consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        print("ready", flush=True)  # the parent waits for this line before sending

    consumer.subscribe([source], on_assign=assigned)
    relayed = 0
    first = 0.0
    while not stopping and (expect is None or relayed < expect):
        # poll() returns with the first record; consume(n, timeout) would wait for n or
        # the whole timeout, which is latency a relay must not add.
        first_record = consumer.poll(0.1)
        if first_record is None:
            continue
        more = consumer.consume(batch - 1, 0) if batch > 1 else []
        records = [r for r in [first_record, *more] if r.error() is None]
        if not records:
            continue
        if not first:
            first = time.perf_counter()
        producer.begin_transaction()
        offsets: dict[int, int] = {}
        for record in records:
            producer.produce(sink, record.value(), record.key())
            offsets[record.partition()] = record.offset() + 1
        producer.send_offsets_to_transaction([TopicPartition(source, p, o) for p, o in offsets.items()],
                                             consumer.consumer_group_metadata())
        producer.commit_transaction()
        relayed += len(records)
    if expect is not None:
        print(json.dumps({"records": relayed, "seconds": time.perf_counter() - first}), flush=True)
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--batch", type=int, default=1, help="records per transaction, at most")
    parser.add_argument("--linger-ms", type=int, default=0)
    parser.add_argument("--expect", type=int, default=None)
    args = parser.parse_args()
    relay(args.bootstrap, args.source, args.sink, args.batch, args.linger_ms, args.expect)


if __name__ == "__main__":
    main()
