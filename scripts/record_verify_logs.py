"""Record the frozen logs ``taskplane verify`` is tested on, from the real stack: a
Kafka broker, the orchestrator and breaker processors, and worker processes running
``tests/processors/verify_agents.py`` under each example's own manifest.

    .venv/bin/python scripts/record_verify_logs.py [--only payment-processor]

Writes ``tests/processors/fixtures/logs/<system>.jsonl``. Each log has root grants
from hints (runs submitted as the one before finished), a retry, a dead letter and its
replay, a lease that expired under a killed worker, and a cancelled run whose holder
completed too late. Re-record only after a deliberate change of decisions (the test
then fails on the old log, naming what changed); the script refuses a log that lacks
a scenario or that ``taskplane verify`` does not pass. Uses TASKPLANE_BOOTSTRAP_SERVERS
when set, else starts a local broker of its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from taskplane.contract import messages as m
from taskplane.processors.orchestrator.verify import (
    current_schemas,
    read_cluster,
    verify_log,
    write_fixture,
)
from taskplane.streams.publisher import Publisher
from taskplane.streams.serde import Serde
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing.stack import (
    EventLog,
    ProcessorThreads,
    WorkerProcess,
    compile_manifest,
    worker_env,
)

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "processors" / "fixtures" / "logs"
AGENTS = "tests.processors.verify_agents"
SYSTEMS = {  # system -> (its one-task-or-DAG root, the task each fault scenario targets)
    "document-pipeline": {"input": {"folder": "docs"}, "retry": "summarizer", "dead": "validator",
                          "stall": "parser"},
    "payment-processor": {"input": {"amount": 42, "customer": "c1"}, "retry": "payment-processor",
                          "dead": "payment-processor", "stall": "payment-processor"},
}
NEEDED = (m.RetryScheduled, m.TaskDeadLettered, m.TaskReplayed, m.LeaseExpired, m.RunCancelled)


def record(system: str, kafka: dict[str, Any], bootstrap: str, logs: Path | None = None) -> Path:
    scenario = SYSTEMS[system]
    topics = Topics(f"verify-{system}-{uuid.uuid4().hex[:6]}")
    ensure_topics(AdminClient(kafka), topics, catalog(run_partitions=1, tool_partitions=1))
    definition = compile_manifest((ROOT / "examples" / system / "system.yaml").read_text())
    with Publisher(kafka, topics) as publisher:
        publisher.define_system(definition)
    env = worker_env(bootstrap, "postgresql://unused", topics.prefix)
    workers = [WorkerProcess(name, {system: AGENTS}, env, logs).start() for name in ("w1", "w2")]
    base = scenario["input"]
    plan = definition.plan
    with ProcessorThreads(kafka, topics, None) as processors, EventLog(kafka, topics.events) as log, \
            Publisher(kafka, topics) as publisher:
        def wait(condition: Any, timeout_s: float = 60) -> Any:
            return log.wait_for(condition, timeout_s, also=processors.check)

        def submit(run_id: str, run_input: dict[str, Any]) -> str:  # short ids keep the log small
            publisher.publish(m.SubmitRun(run_id, plan, json.dumps(run_input, sort_keys=True)))
            publisher.flush()
            return run_id

        def finished(run_id: str, timeout_s: float = 60) -> None:
            wait(lambda log: log.events(m.RunSucceeded, run_id), timeout_s)

        # Root grants: each run submitted as the one before finished, within the window.
        for n in range(3):
            finished(submit(f"r{n}", base))
        retried = submit("retry", {**base, "fail": {scenario["retry"]: 1}})
        dead = submit("dead", {**base, "fail": {scenario["dead"]: 3}})
        finished(retried)
        wait(lambda log: log.events(m.TaskDeadLettered, dead))
        publisher.publish(m.ReplayTask(dead, scenario["dead"], "recorder"))
        publisher.flush()
        finished(dead)
        # A lease expires under a killed worker; another worker takes the retry.
        stalled = submit("stall", {**base, "sleep": {scenario["stall"]: 60}})
        grant = wait(lambda log: [g for g in log.events(m.LeaseGranted, stalled) if g.task == scenario["stall"]])
        holder = next(w for w in workers if w.owns(grant[0].worker_id))
        holder.kill()
        workers.append(WorkerProcess("w3", {system: AGENTS}, env, logs).start())
        finished(stalled, 180)  # the dead worker's `work` partitions move after its session
        # A run cancelled while its task runs: the holder's late completion is rejected.
        cancelled = submit("cancel", {**base, "sleep": {scenario["stall"]: 4}})
        wait(lambda log: log.events(m.LeaseGranted, cancelled))
        publisher.publish(m.CancelRun(cancelled, "recorded cancellation"))
        publisher.flush()
        wait(lambda log: log.events(m.CommandRejected, cancelled), 30)
        time.sleep(1)  # the last batches commit
        for worker in workers:
            worker.stop()
        processors.stop()
    recorded = read_cluster(kafka, topics)
    serde = Serde()
    decoded = [serde.decode(r.value)[1] for r in recorded.records]
    missing = [kind.__name__ for kind in NEEDED if not any(isinstance(e, kind) for e in decoded)]
    if not any(isinstance(e, m.RunSubmitted) and e.free_slots for e in decoded):
        missing.append("RunSubmitted.free_slots (a root grant from hints)")
    if missing:
        raise SystemExit(f"{system}: the recording lacks {', '.join(missing)}; record again")
    writers = (serde.registry.writer(r.value[2:10]) for r in recorded.records)  # after C3 01: the fingerprint
    recorded.schemas = current_schemas({w.full_name for w in writers if w is not None})
    verdict = verify_log(recorded)
    if verdict.first is not None:
        raise SystemExit(f"{system}: taskplane verify fails on the fresh recording: {verdict.first}")
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{system}.jsonl"
    write_fixture(path, recorded)
    print(f"{path.relative_to(ROOT)}: {len(recorded.records)} records, {path.stat().st_size:,} bytes")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(SYSTEMS))
    parser.add_argument("--logs", type=Path, help="Keep the worker processes' logs in this directory.")
    args = parser.parse_args()
    settings = StackSettings()
    kafka_dir, local = None, None
    bootstrap = settings.bootstrap_servers
    if not bootstrap:
        from taskplane.devstack.kafka import LocalKafka

        kafka_dir = Path(tempfile.mkdtemp(prefix="taskplane-record-"))
        local = LocalKafka(kafka_dir / "kafka", version=settings.local_kafka_version, cache_dir=settings.cache_dir)
        local.start()
        bootstrap = local.bootstrap_servers
    try:
        for system in [args.only] if args.only else sorted(SYSTEMS):
            record(system, settings.kafka_config(bootstrap), bootstrap, args.logs)
    finally:
        if local is not None:
            local.stop()
        if kafka_dir is not None:
            shutil.rmtree(kafka_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # the workers import the agents from tests/
    main()
