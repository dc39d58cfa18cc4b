"""A whole pipeline per test: topics under the test's prefix, the orchestrator, breaker
and projector in threads, worker processes on demand, and a follower of ``events``."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from taskplane.contract.plan import SystemDefinition, SystemPlan
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import (
    EventLog,
    ProcessorThreads,
    WorkerProcess,
    compile_manifest,
    worker_env,
)

E2E_TOOLS = str(Path(__file__).resolve().parent / "e2e_tools.py")
# A worker process's stop at teardown, where nothing is asserted any more: SIGTERM, then
# SIGKILL after this. An attempt still in a tool (a sleeping one) holds a stopping worker
# for its grace twice over (5 s + 5 s); the graceful stop itself is the tests' own
# subject where it matters (tests/workers/test_worker_kafka.py, tests/deploy/test_image.py).
TEARDOWN_STOP_S = 2.0


class Harness:
    """What every e2e harness does with a manifest and worker processes."""

    publisher: Publisher
    env: dict[str, str]
    log_dir: Path
    workers: list[WorkerProcess]

    def define(self, manifest: str) -> SystemPlan:
        definition: SystemDefinition = compile_manifest(manifest)
        self.publisher.define_system(definition)
        self.publisher.flush()
        return definition.plan

    def worker(self, name: str, serves: dict[str, str]) -> WorkerProcess:
        worker = WorkerProcess(name, serves, self.env, self.log_dir).start()
        self.workers.append(worker)
        return worker

    def worker_logs(self, tail: int) -> dict[str, str]:
        """The last ``tail`` characters of each worker's log, for a failure message."""
        return {w.name: (self.log_dir / f"{w.name}.log").read_text()[-tail:] for w in self.workers}


@dataclass
class Pipeline(Harness):
    kafka: dict[str, Any]
    topics: Topics
    database_url: str
    schema: str
    publisher: Publisher
    log: EventLog
    processors: ProcessorThreads
    env: dict[str, str]
    log_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def wait(self, condition: Any, timeout_s: float = 30.0) -> Any:
        try:
            return self.log.wait_for(condition, timeout_s, also=self.processors.check)
        except TimeoutError:
            raise AssertionError(f"timed out; worker logs (tails): {self.worker_logs(3000)}") from None


@pytest.fixture
def pipeline(kafka_config: dict[str, Any], fresh_database: str, unique_prefix: str,
             tmp_path: Path) -> Iterator[Pipeline]:
    kafka = {**kafka_config, "log_level": 3}
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(kafka), topics, catalog(2, 1))
    schema = unique_prefix.replace("-", "_")
    processors = ProcessorThreads(kafka, topics, fresh_database, schema).start()
    log = EventLog(kafka, topics.events)
    env = worker_env(kafka["bootstrap.servers"], fresh_database, unique_prefix)
    built = Pipeline(kafka, topics, fresh_database, schema, Publisher(kafka, topics), log, processors, env, tmp_path)
    try:
        yield built
    finally:
        for worker in built.workers:
            worker.stop(TEARDOWN_STOP_S)
        processors.stop()
        log.close()


@pytest.fixture
def fakepay(fresh_database: str, pipeline: Pipeline) -> Iterator[str]:
    """A fakepay server on a free port (charges in the test's database); its URL is
    passed to the pipeline's worker processes."""
    from taskplane._examples.fakepay import serve

    server = serve(0, fresh_database)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    pipeline.env["TASKPLANE_FAKEPAY_URL"] = url
    yield url
    server.shutdown()
