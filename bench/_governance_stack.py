"""The stack each ``bench.governance`` measure runs on: fresh topics on the bench's
broker, the processors in threads of this process, real worker processes (SIGKILL-able)
serving one system, and a client. Shared by ``_governance_budget`` and
``_governance_approvals``.

    with GovernanceStack(kafka, MANIFEST, "bench/_my_tools.py", env={"X": "1"}) as stack:
        runs = stack.submit_many([{"n": 1}, ...])
        infos = stack.finish(runs, timeout_s=120)     # RunInfo by run id, every run ended
        stack.workers[0].kill(); stack.workers[0].start()
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from taskplane import Client, RunHandle, RunInfo
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import ProcessorThreads, compile_manifest
from taskplane.testing.stack import WorkerProcess


class GovernanceStack:
    def __init__(self, kafka: dict[str, Any], manifest: str, module: str, *, workers: int = 4,
                 concurrency: int = 16, env: dict[str, str] | None = None) -> None:
        self.kafka = kafka
        self.topics = Topics(f"benchgov{uuid.uuid4().hex[:6]}")
        ensure_topics(kafka_clients.admin(kafka), self.topics, catalog())
        self.definition = compile_manifest(manifest)
        with Publisher(kafka, self.topics) as publisher:
            publisher.define_system(self.definition)
        self.processors = ProcessorThreads(kafka, self.topics, None).start()
        self.client = Client(kafka["bootstrap.servers"], topic_prefix=self.topics.prefix,
                             kafka_options={k: v for k, v in kafka.items() if k != "bootstrap.servers"})
        self.log_dir = Path(tempfile.mkdtemp(prefix="taskplane-bench-governance-"))
        worker_env = {"TASKPLANE_BOOTSTRAP_SERVERS": kafka["bootstrap.servers"],
                      "TASKPLANE_TOPIC_PREFIX": self.topics.prefix, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.workers = [WorkerProcess(f"gov{i}-{os.getpid()}", {self.definition.name: module}, worker_env,
                                      self.log_dir, concurrency).start() for i in range(workers)]
        self.runs: dict[str, RunHandle] = {}

    @property
    def system(self) -> str:
        return self.definition.name

    def submit_many(self, inputs: list[Any]) -> list[str]:
        handles = self.client.submit_many(self.system, inputs)
        self.runs.update((h.run_id, h) for h in handles)
        return [h.run_id for h in handles]

    def finish(self, run_ids: list[str], timeout_s: float) -> dict[str, RunInfo]:
        """Each run's final RunInfo (succeeded, failed or cancelled); TimeoutError past
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        infos: dict[str, RunInfo] = {}
        for run_id in run_ids:
            while True:
                self.processors.check()
                info = self.runs[run_id].status()
                if info.status in ("succeeded", "failed", "cancelled", "rejected"):
                    infos[run_id] = info
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run {run_id} still {info.status} after {timeout_s:g}s")
                time.sleep(0.05)
        return infos

    def close(self) -> None:
        for worker in self.workers:  # all at once: each winds down its attempts in parallel
            if worker.alive() and worker.process is not None:
                worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()
        self.processors.stop()
        self.client.close()

    def __enter__(self) -> GovernanceStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
