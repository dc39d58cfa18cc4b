"""Where tenant B's run latency goes in bench.fairness, per stage: the solo and flooded
phases of ``bench.fairness`` (no priority part), on topics that stamp each record with the
broker's append time (``LogAppendTime``; the runtime reads the envelope's time, never the
record's, so nothing decides differently). Log times alone cannot split a run: an
event's time is its command's, so release, lease and finish all carry the submit's or
the claim's time.

Stages of each of B's runs (one task), append time to append time:
``ingest`` SubmitRun -> RunSubmitted (the orchestrator); ``dispatch`` RunSubmitted ->
WorkReleased (the offer read and released by the dispatcher); ``transit`` WorkReleased ->
WorkItem (the same transaction); ``work`` WorkItem -> ClaimTask (on ``work``, then a free
slot and claim at the worker); ``claim`` ClaimTask -> Assignment (the orchestrator);
``attempt`` Assignment -> CompleteTask (the worker: the 50 ms call); ``finish``
CompleteTask -> RunSucceeded (not in the bench's latency, which ends at the completion's
log time); ``total`` the bench's latency. With each release: A's released offers not yet
leased, and A's attempts leased and not completed. Also: each process's CPU, each
processor's transactions (from its /metrics), and how long after the orchestrator the
dispatcher had queued A's flood.

    python -m bench._fairness_stages [--seconds 6] [--from-orchestrator]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ResourceType,
)

from bench._stack import bench_stack
from bench.fairness import Bench, percentile
from taskplane.contract.messages import (
    Assignment,
    ClaimTask,
    CompleteTask,
    LeaseGranted,
    RunSubmitted,
    RunSucceeded,
    SubmitRun,
    WorkItem,
)
from taskplane.contract.scheduling import OfferQueued, WorkReleased
from taskplane.streams import kafka_clients
from taskplane.streams.serde import Serde

STAGES = ("ingest", "dispatch", "transit", "work", "claim", "attempt", "finish", "total")


def read_all(kafka: dict[str, Any], topic: str) -> list[tuple[int, Any, Any]]:
    """(kafka timestamp, meta, value) of every committed record of ``topic``."""
    consumer = kafka_clients.consumer(kafka, f"stages-{topic}", eof=True)
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    serde, found, ended = Serde(), [], set[int]()
    deadline = time.monotonic() + 60
    while len(ended) < len(partitions) and time.monotonic() < deadline:
        for record in consumer.consume(1000, 1.0):
            if record.error() is not None:
                ended.add(record.partition())
                continue
            if record.value() is None:
                continue
            meta, value = serde.decode(record.value())
            found.append((record.timestamp()[1], meta, value))
    consumer.close()
    return found


def stages(kafka: dict[str, Any], bench: Bench, runs: list[str]) -> dict[str, Any]:
    wanted = set(runs)
    marks: dict[str, dict[str, int]] = {run: {} for run in runs}
    topics = bench.topics
    kinds: dict[str, dict[type, str]] = {topics.commands: {SubmitRun: "submit", ClaimTask: "claim", CompleteTask: "complete"},
             topics.events: {RunSubmitted: "submitted", LeaseGranted: "lease", RunSucceeded: "finished"},
             topics.work: {WorkItem: "work"}, topics.inbox: {Assignment: "assigned"},
             topics.dispatch_events: {WorkReleased: "released"}}
    records = {topic: read_all(kafka, topic) for topic in kinds}
    for topic, names in kinds.items():
        for ts, meta, value in records[topic]:
            run = getattr(value, "run_id", None)
            name = names.get(type(value))
            if name is None or run not in wanted:
                continue
            marks[run].setdefault(name, ts)
            if name == "submit":
                marks[run]["submit_log"] = meta.timestamp_ms
            elif name == "complete":
                marks[run]["complete_log"] = meta.timestamp_ms
    # A's work ahead of each of B's releases: untaken releases and running attempts (append times).
    timeline: list[tuple[int, int, int]] = []
    leases = {(e.run_id, e.task): ts for ts, _m, e in records[topics.events] if isinstance(e, LeaseGranted)}
    ends = {(e.run_id, e.task): ts for ts, _m, e in records[topics.commands] if isinstance(e, CompleteTask)}
    for ts, _meta, event in records[topics.dispatch_events]:
        if not isinstance(event, WorkReleased) or event.run_id in wanted:
            continue
        key = (event.run_id, event.task)
        timeline.append((ts, 1, 0))
        if key in leases:
            timeline.append((leases[key], -1, 1))
            if key in ends:
                timeline.append((ends[key], 0, -1))
    timeline.sort()
    per_stage: dict[str, list[int]] = {name: [] for name in STAGES}
    ahead_untaken, ahead_running, rows = [], [], []
    order = ("submit", "submitted", "released", "work", "claim", "assigned", "complete", "finished")
    for index, run in enumerate(runs):
        mark = marks[run]
        if not all(name in mark for name in order):
            continue
        row = {STAGES[i]: mark[order[i + 1]] - mark[order[i]] for i in range(len(order) - 1)}
        row["total"] = mark["complete_log"] - mark["submit_log"]
        untaken = sum(u for t, u, _r in timeline if t <= mark["released"])
        running = sum(r for t, _u, r in timeline if t <= mark["released"])
        row.update(a_untaken=untaken, a_running=running, index=index)
        rows.append(row)
        ahead_untaken.append(untaken)
        ahead_running.append(running)
        for name in STAGES:
            per_stage[name].append(row[name])
    summary: dict[str, Any] = {"runs": len(rows)}
    for name in STAGES:
        values = per_stage[name]
        summary[name] = [percentile(values, 0.5), percentile(values, 0.9), max(values) if values else None]
    summary["a_untaken_p50"] = percentile(ahead_untaken, 0.5)
    summary["a_running_p50"] = percentile(ahead_running, 0.5)
    summary["slowest"] = sorted(rows, key=lambda r: r["total"])[-4:]
    return summary


def append_times(kafka: dict[str, Any], bench: Bench) -> None:
    """The bench's topics stamp records when the broker appends them (the runtime reads
    the envelope's time, never the record's)."""
    topics = bench.topics
    names = (topics.commands, topics.events, topics.work, topics.inbox, topics.dispatch_events)
    admin = kafka_clients.admin(kafka)
    entry = ConfigEntry("message.timestamp.type", "LogAppendTime",
                        incremental_operation=AlterConfigOpType.SET)
    futures = admin.incremental_alter_configs(
        [ConfigResource(ResourceType.TOPIC, name, incremental_configs=[entry]) for name in names])
    for future in futures.values():
        future.result(30)


def cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used."""
    found = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[name] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return found


def cpu_share(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    return {name: round((after[name] - before[name]) / seconds, 2) for name in after if name in before}


SCRAPED = {"taskplane_processor_batch_seconds_count": 0, "taskplane_processor_batch_seconds_sum": 1,
           "taskplane_processor_records_total": 2, "taskplane_processor_commit_seconds_sum": 3}


def scrape(ports: dict[str, int]) -> dict[str, tuple[float, ...]]:
    """(batches, seconds in batches, records, seconds in send_offsets and commit) of each
    processor, from its /metrics."""
    found = {}
    for name, port in ports.items():
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        values = [0.0] * len(SCRAPED)
        for line in text.splitlines():
            index = SCRAPED.get(line.split("{", 1)[0].split(" ", 1)[0])
            if index is not None:
                values[index] += float(line.split()[-1])
        found[name] = tuple(values)
    return found


def batches(before: dict[str, tuple[float, ...]], after: dict[str, tuple[float, ...]],
            seconds: float) -> dict[str, dict[str, float]]:
    """Per processor: batches a second, mean batch ms, records a batch, and of the batch's
    ms those in send_offsets and commit (``commit_ms``: the broker's round trips; the rest
    is polling, deciding and producing)."""
    found = {}
    for name, (count, total, records, commits) in after.items():
        n = max(1, count - before[name][0])
        found[name] = {"per_s": round((count - before[name][0]) / seconds, 1),
                       "ms": round(1000 * (total - before[name][1]) / n, 1),
                       "records": round((records - before[name][2]) / n, 1),
                       "commit_ms": round(1000 * (commits - before[name][3]) / n, 1)}
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--from-orchestrator", action="store_true",
                        help="start B's flooded runs once the orchestrator has taken A's submits "
                             "(bench.fairness before 2026-12-07: the dispatcher may still be reading them)")
    args = parser.parse_args()
    brokers: list[int] = []
    with bench_stack(brokers) as kafka:
        kafka = {**kafka, "log_level": 3}
        with tempfile.TemporaryDirectory(prefix="taskplane-stages-") as tmp:
            bench, ports = Bench(kafka, Path(tmp)), {}
            for component in bench.components:
                ports[component.name] = port = free_port()
                component._env["TASKPLANE_METRICS_PORT"] = str(port)
            append_times(kafka, bench)
            with bench:
                out = phases(bench, kafka, ports, brokers, args.seconds, args.from_orchestrator)
    report(out)


def phases(bench: Bench, kafka: dict[str, Any], ports: dict[str, int], brokers: list[int],
           seconds: float, from_orchestrator: bool) -> dict[str, Any]:
    bench.finished(bench.trickle("fair", "b", 5, 2), 60)
    pids = {c.name: c.process.pid for c in bench.components if c.process is not None}
    pids.update({w.name: w.pid for w in bench.workers})
    pids.update({f"broker{i}": pid for i, pid in enumerate(brokers)})
    before, scraped, clock = cpu_s(pids), scrape(ports), time.monotonic()
    solo_ids = bench.trickle("fair", "b", 5, seconds)
    solo_cpu = cpu_share(before, cpu_s(pids), time.monotonic() - clock)
    solo_batches = batches(scraped, scrape(ports), time.monotonic() - clock)
    bench.finished(solo_ids, 120)
    started = time.monotonic()
    flood_ids = [bench.submit("fair", "a") for _ in range(5_000)]
    during = bench.trickle("fair", "b", 5, 1.0)
    bench.accepted(flood_ids, 300)
    if not from_orchestrator:  # as bench.fairness: once the flood is queued in the dispatcher
        bench.queued(flood_ids, 300)
    ingest_s = time.monotonic() - started
    before, scraped, clock = cpu_s(pids), scrape(ports), time.monotonic()
    flooded_at_ms = time.time() * 1000
    flooded_ids = bench.trickle("fair", "b", 5, seconds)
    flooded_cpu = cpu_share(before, cpu_s(pids), time.monotonic() - clock)
    flooded_batches = batches(scraped, scrape(ports), time.monotonic() - clock)
    bench.finished(flooded_ids, 180)
    bench.finished(during, 180)
    assert bench.log is not None
    a_done = sum(1 for e in bench.log.events(RunSucceeded) if e.run_id in set(flood_ids))
    flood = set(flood_ids)
    queued = [ts for ts, _m, e in read_all(kafka, bench.topics.dispatch_events)
              if isinstance(e, OfferQueued) and e.run_id in flood]
    submitted = [ts for ts, _m, e in read_all(kafka, bench.topics.events)
                 if isinstance(e, RunSubmitted) and e.run_id in flood]
    return {"dispatcher_ingest_lag_ms": max(queued) - max(submitted),
            "flooded_phase_started_after_ms": int(flooded_at_ms - max(submitted)),
            "solo": stages(kafka, bench, solo_ids), "flooded": stages(kafka, bench, flooded_ids),
           "a_runs_done": a_done,
           "flood_ingest_s": round(ingest_s, 1), "cpu_solo": solo_cpu, "cpu_flooded": flooded_cpu,
           "batches_solo": solo_batches, "batches_flooded": flooded_batches}


def report(out: dict[str, Any]) -> None:
    print("stage: [p50, p90, max] ms; flood ingest", out["flood_ingest_s"], "s; A done", out["a_runs_done"],
          file=sys.stderr)
    for phase in ("solo", "flooded"):
        found = out[phase]
        print(phase, {name: found[name] for name in STAGES}, "A ahead (untaken, running) p50:",
              found["a_untaken_p50"], found["a_running_p50"], file=sys.stderr)
        for row in found["slowest"]:
            print("   slow:", row, file=sys.stderr)
    print("dispatcher ingest lag", out["dispatcher_ingest_lag_ms"], "ms; flooded phase started",
          out["flooded_phase_started_after_ms"], "ms after the last RunSubmitted", file=sys.stderr)
    print("cpu (cores) solo", out["cpu_solo"], "flooded", out["cpu_flooded"], file=sys.stderr)
    print("batches solo", out["batches_solo"], "flooded", out["batches_flooded"], file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
