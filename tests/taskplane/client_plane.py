"""A taskplane plane for the client tests (import ``plane_fixture``; the fixture is ``plane``): topics under a fresh prefix, the
orchestrator and breaker in threads, one worker process serving the test systems."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from taskplane.client import Client
from taskplane.contract.messages import CancelRun, ReplayTask, SubmitRun
from taskplane.contract.plan import ExecutionPolicy, SystemDefinition, SystemPlan
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.publisher import Publisher
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import ProcessorThreads, WorkerProcess, compile_manifest, worker_env

CLIENT_TOOLS = str(Path(__file__).resolve().parent / "client_tools.py")
# The worker's stop at teardown: SIGKILL after this. A napper attempt still sleeping in
# its tool holds a stopping worker for its grace twice over (10 s); nothing is asserted
# then (as tests/e2e/e2e_pipeline.py's TEARDOWN_STOP_S).
TEARDOWN_STOP_S = 2.0
SYSTEMS = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: pair}
spec:
  agents:
    - {name: shout, tools: [text.upper]}
    - {name: count, dependencies: [shout]}
  execution: {leaseTimeout: 5s}
---
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: napper}
spec:
  agents:
    - {name: nap, tools: [clock.sleep]}
  execution: {leaseTimeout: 5s}
---
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: doomed}
spec:
  agents:
    - {name: doomed, tools: [always.fail]}
  execution: {leaseTimeout: 5s, maxRetries: 1, initialBackoff: 100ms}
"""


@dataclass
class Plane:
    kafka: dict[str, Any]
    topics: Topics
    client: Client
    processors: ProcessorThreads | None = None  # a test may restart them

    @property
    def bootstrap(self) -> str:
        return str(self.kafka["bootstrap.servers"])

    def client_env(self) -> dict[str, str]:
        return {"TASKPLANE_BOOTSTRAP_SERVERS": self.bootstrap, "TASKPLANE_TOPIC_PREFIX": self.topics.prefix}


@pytest.fixture(scope="module", name="plane")
def plane_fixture(kafka_config: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    kafka = {**kafka_config, "log_level": 3}
    topics = Topics(f"t-client-{uuid.uuid4().hex[:8]}")
    ensure_topics(AdminClient(kafka), topics, catalog(2, 1))
    with Publisher(kafka, topics) as publisher:
        for text in SYSTEMS.split("---"):
            publisher.define_system(compile_manifest(text))
        # No agents: the orchestrator finishes such a run at its submit (the manifest
        # compiler refuses an empty system, the decider does not).
        empty = SystemPlan("empty", "v1", (), ExecutionPolicy())
        publisher.define_system(SystemDefinition("empty", "v1", empty, ""))
    processors = ProcessorThreads(kafka, topics, None).start()
    env = worker_env(str(kafka["bootstrap.servers"]), "postgresql://unused", topics.prefix)
    serves = {name: CLIENT_TOOLS for name in ("pair", "napper", "doomed")}
    worker = WorkerProcess("w1", serves, env, tmp_path_factory.mktemp("client-workers")).start()
    client = Client(str(kafka["bootstrap.servers"]), topic_prefix=topics.prefix)
    plane = Plane(kafka, topics, client, processors)
    try:
        yield plane
    finally:
        client.close()
        worker.stop(TEARDOWN_STOP_S)
        if plane.processors is not None:
            plane.processors.stop()


def client_commands(plane: Plane) -> int:
    """How many commands a client writes (SubmitRun, CancelRun, ReplayTask) are on
    ``commands``: workers write there too, so the topic's size says nothing."""
    serde = Serde()
    return sum(1 for _p, _key, value in read_to_end(plane.kafka, plane.topics.commands)
               if value is not None and isinstance(serde.decode(value)[1], SubmitRun | CancelRun | ReplayTask))
