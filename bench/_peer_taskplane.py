"""taskplane in bench.peers: a local Kafka broker, the orchestrator and the breaker
processors (``taskplane processor run``) and 2 × ``taskplane worker run`` at default
settings, each its own process. Submits and results go through ``_LogClient``."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from bench._peers_base import ROOT, Peer, Service, wait_until
from bench._peers_install import PeerUnavailable
from taskplane.devstack.kafka import LocalKafka, LocalStackError
from taskplane.streams.topics import Topics, catalog, ensure_topics

SYSTEM = "bench-dag"
AGENTS = str(ROOT / "bench" / "_peer_taskplane_agents.py")
MANIFEST = f"""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: {SYSTEM}}}
spec:
  agents:
    - {{name: parser}}
    - {{name: validator, dependencies: [parser]}}
    - {{name: summarizer, dependencies: [parser]}}
    - {{name: publisher, dependencies: [validator, summarizer]}}
"""
WORKERS = 2


class _LogClient:
    """Submit runs and read each run's publisher output from the ``events`` topic, the
    way bench/pipeline.py reads results. The one place to switch to the public client
    (``taskplane.Client``) once it exists: submit, then the result of each run."""

    def __init__(self, kafka: dict[str, Any], topics: Topics) -> None:
        from taskplane._demo_stack import EventLog, compile_manifest
        from taskplane.streams.publisher import Publisher

        self._definition = compile_manifest(MANIFEST)
        self._publisher = Publisher(kafka, topics)
        self._publisher.define_system(self._definition)
        self._publisher.flush()
        self._log = EventLog(kafka, topics.events)
        self._lock = threading.Lock()

    def submit(self, index: int) -> str:
        run_id = self._publisher.submit_run(self._definition.plan, {"index": index})
        with self._lock:  # one flush at a time: Publisher collects delivery failures in a list
            self._publisher.flush()
        return run_id

    def end_times(self, run_ids: Sequence[str], timeout_s: float) -> list[float]:
        from taskplane.contract.messages import RunFailed, TaskSucceeded

        wanted = set(run_ids)

        def ends(log: Any) -> dict[str, float] | None:
            failed = [e.run_id for e in log.events(RunFailed) if e.run_id in wanted]
            if failed:
                raise RuntimeError(f"taskplane run {failed[0]} failed")
            found = {e.run_id: float(json.loads(e.output)["end"]) for e in log.events(TaskSucceeded)
                     if e.task == "publisher" and e.run_id in wanted}
            return found if len(found) == len(wanted) else None

        found = self._log.wait_for(ends, timeout_s)
        return [found[run_id] for run_id in run_ids]

    def close(self) -> None:
        self._log.close()


class TaskplanePeer(Peer):
    name = "taskplane"
    _kafka: LocalKafka | None = None
    _client: _LogClient | None = None

    def start(self) -> None:
        try:
            self._kafka = LocalKafka(self.workdir / "kafka", cache_dir=self.cache_dir).start()
        except LocalStackError as error:
            raise PeerUnavailable(f"kafka: {str(error).splitlines()[0]}") from error
        kafka = {"bootstrap.servers": self._kafka.bootstrap_servers, "log_level": 3}
        topics = Topics(f"peers{uuid.uuid4().hex[:6]}")
        ensure_topics(AdminClient(kafka), topics, catalog())
        self._client = _LogClient(kafka, topics)
        env = {"TASKPLANE_BOOTSTRAP_SERVERS": self._kafka.bootstrap_servers,
               "TASKPLANE_TOPIC_PREFIX": topics.prefix, "PYTHONUNBUFFERED": "1"}
        services: list[Service] = [
            self.launch(name, [*_taskplane(), "processor", "run", name], env) for name in ("orchestrator", "breaker")]
        services += [self.launch(f"worker-{n}", [*_taskplane(), "worker", "run", "--system", SYSTEM,
                                                 "--module", AGENTS], env) for n in range(WORKERS)]
        probe = self.submit(-1)
        done: list[float] = []
        deadline = time.monotonic() + 120

        def probe_done() -> bool:  # the first run: processors and workers up, groups settled
            with contextlib.suppress(TimeoutError):
                done.extend(self.end_times([probe], 1.0))
            return bool(done) or time.monotonic() > deadline

        wait_until(probe_done, 130, "taskplane's first run", services)
        if not done:
            raise PeerUnavailable("taskplane's first run did not finish within 120s")

    def pids(self) -> list[int]:
        broker = [self._kafka.pid] if self._kafka and self._kafka.pid else []
        return [*super().pids(), *broker]

    def submit(self, index: int) -> str:
        assert self._client is not None
        return self._client.submit(index)

    def end_times(self, handles: Sequence[Any], timeout_s: float) -> list[float]:
        assert self._client is not None
        return self._client.end_times(handles, timeout_s)

    def stop(self) -> None:
        super().stop()
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._kafka is not None:
            self._kafka.stop()
            self._kafka = None


def _taskplane() -> list[str]:
    """The ``taskplane`` command of this interpreter's environment."""
    script = Path(sys.executable).parent / "taskplane"
    return [str(script)] if script.exists() else [sys.executable, "-m", "taskplane.cli"]
