"""taskplane in bench.peers: a local Kafka broker, the orchestrator and the breaker
processors (``taskplane processor run``) and 2 × ``taskplane worker run`` at default
settings, each its own process. Submits and results go through ``_LogClient``: plain
submits through the ``Publisher``, or through the public ``Client`` (``--client``, and
``--keyed``: each with a fresh idempotency key)."""

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

from bench._peers_base import ROOT, Peer, Service, wait_until
from bench._peers_install import PeerUnavailable
from taskplane.devstack.kafka import LocalKafka, LocalStackError
from taskplane.streams import kafka_clients
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
HISTORY_SYSTEM = "bench-history"  # no agents: the orchestrator finishes each run at its submit
LOOKUPS = 200


class _LogClient:
    """Submit runs and read each run's publisher output from the ``events`` topic, the
    way bench/pipeline.py reads results. The one place to switch to the public client
    (``taskplane.Client``) once it exists: submit, then the result of each run.

    A follower thread keeps only what a phase needs (the publisher's end time per run,
    failed runs), so waiting costs the harness little CPU next to the system measured."""

    def __init__(self, kafka: dict[str, Any], topics: Topics) -> None:
        from taskplane.streams.publisher import Publisher
        from taskplane.testing import compile_manifest

        self._definition = compile_manifest(MANIFEST)
        self._kafka, self._topics = kafka, topics
        self._client: Any = None  # the public Client, made on first keyed (or --client) submit
        self._succeeded = 0  # RunSucceeded events seen (history runs are counted by them)
        self._publisher = Publisher(kafka, topics)
        self._publisher.define_system(self._definition)
        self._publisher.flush()
        self._submit_lock = threading.Lock()
        self._ends: dict[str, float] = {}
        self._failed: dict[str, str] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        # Held fetches (FOLLOWING): the reader's empty fetches are broker CPU, counted as
        # taskplane's idle cost (librdkafka's 500 ms: 2 a second).
        self._consumer = kafka_clients.consumer(kafka, f"peers-results-{uuid.uuid4().hex[:6]}", start="earliest",
                                                tuning=kafka_clients.FOLLOWING)
        self._consumer.subscribe([topics.events])
        self._thread = threading.Thread(target=self._follow, name="peers-results", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        from taskplane.contract.messages import RunFailed, RunSucceeded, TaskSucceeded
        from taskplane.streams.exceptions import SerdeError
        from taskplane.streams.serde import Serde

        serde = Serde()
        while not self._stopping.is_set():
            ends: dict[str, float] = {}
            failed: dict[str, str] = {}
            succeeded = 0
            for record in self._consumer.consume(500, 0.1):
                if record.error() is not None or record.value() is None:
                    continue
                try:
                    _meta, event = serde.decode(record.value())
                except SerdeError as error:  # the orchestrator wrote it: say so, keep following
                    print(f"taskplane: undecodable event at offset {record.offset()}: {error}", flush=True)
                    continue
                if isinstance(event, TaskSucceeded) and event.task == "publisher":
                    ends[event.run_id] = float(json.loads(event.output)["end"])
                elif isinstance(event, RunFailed):
                    failed[event.run_id] = event.reason
                elif isinstance(event, RunSucceeded):
                    succeeded += 1
            if ends or failed or succeeded:
                with self._changed:
                    self._ends.update(ends)
                    self._failed.update(failed)
                    self._succeeded += succeeded
                    self._changed.notify_all()

    def submit(self, index: int, keyed: bool = False, public: bool = False) -> str:
        if keyed or public:
            key = uuid.uuid4().hex if keyed else None
            return str(self.public_client().submit(SYSTEM, {"index": index}, idempotency_key=key).run_id)
        run_id = self._publisher.submit_run(self._definition.plan, {"index": index})
        with self._submit_lock:  # one flush at a time: Publisher collects delivery failures in a list
            self._publisher.flush()
        return run_id

    def public_client(self) -> Any:
        with self._submit_lock:
            if self._client is None:
                from taskplane import Client

                self._client = Client(self._kafka["bootstrap.servers"], topic_prefix=self._topics.prefix)
            return self._client

    def add_history(self, runs: int, timeout_s: float = 1_800.0) -> list[tuple[str, str]]:
        """``runs`` keyed runs of a system without agents, each finished by the
        orchestrator at its submit: (key, run id) of each, once all are on the log."""
        from taskplane.contract.plan import ExecutionPolicy, SystemDefinition, SystemPlan

        plan = SystemPlan(HISTORY_SYSTEM, "v1", (), ExecutionPolicy())
        self._publisher.define_system(SystemDefinition(HISTORY_SYSTEM, "v1", plan, ""))
        with self._changed:
            target = self._succeeded + runs
        made = []
        for index in range(runs):
            key = f"history-{uuid.uuid4().hex}"
            made.append((key, self._publisher.submit_run(plan, {"index": index}, idempotency_key=key)))
            if index % 5_000 == 4_999:
                self._publisher.flush()
        self._publisher.flush()
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._succeeded < target:
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{target - self._succeeded} history runs unfinished after {timeout_s:.0f}s")
        return made

    def end_times(self, run_ids: Sequence[str], timeout_s: float) -> list[float]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                failed = [run_id for run_id in run_ids if run_id in self._failed]
                if failed:
                    raise RuntimeError(f"taskplane run {failed[0]} failed: {self._failed[failed[0]]}")
                missing = sum(1 for run_id in run_ids if run_id not in self._ends)
                if not missing:
                    return [self._ends[run_id] for run_id in run_ids]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{missing} of {len(run_ids)} taskplane runs unfinished after {timeout_s:.0f}s")
                self._changed.wait(remaining)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._consumer.close()
        if self._client is not None:
            self._client.close()


class TaskplanePeer(Peer):
    name = "taskplane"
    supports_keys = True
    public_client = False  # --client: plain submits through the public Client too
    _history: list[tuple[str, str]] = []  # noqa: RUF012  (replaced, never mutated)
    _kafka: LocalKafka | None = None
    _client: _LogClient | None = None
    kafka_config: dict[str, Any] | None = None  # once started (bench.timeline reads the topics)
    topics: Topics | None = None

    def start(self) -> None:
        try:
            self._kafka = LocalKafka(self.workdir / "kafka", cache_dir=self.cache_dir).start()
        except LocalStackError as error:
            raise PeerUnavailable(f"kafka: {str(error).splitlines()[0]}") from error
        kafka = {"bootstrap.servers": self._kafka.bootstrap_servers, "log_level": 3}
        topics = Topics(f"peers{uuid.uuid4().hex[:6]}")
        ensure_topics(kafka_clients.admin(kafka), topics, catalog())
        self.kafka_config, self.topics = kafka, topics
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
        return self._client.submit(index, self.keyed, self.public_client)

    def add_history(self, runs: int) -> None:
        assert self._client is not None
        self._history = self._client.add_history(runs)

    def extra_figures(self) -> dict[str, float]:
        """With a history: ``client.run`` of history runs (the first lookup of a new
        client reads one partition of the ``runs`` index; later ones the news), and a
        keyed submit of a key already on the log, until its handle has the run's result."""
        if not self._history or self._client is None or self.topics is None:
            return {}
        from bench._peers_stats import percentile
        from taskplane import Client

        picks = [self._history[(i * 7_919) % len(self._history)] for i in range(LOOKUPS)]
        with Client(self._client.public_client().kafka_config["bootstrap.servers"],
                    topic_prefix=self.topics.prefix) as client:
            began = time.perf_counter()
            client.run(picks[0][1]).result(timeout=30)
            first_ms = (time.perf_counter() - began) * 1000
            lookups, answers = [], []
            for _key, run_id in picks[1:]:
                began = time.perf_counter()
                client.run(run_id).result(timeout=30)
                lookups.append((time.perf_counter() - began) * 1000)
            for key, run_id in picks:
                began = time.perf_counter()
                handle = client.submit(HISTORY_SYSTEM, None, idempotency_key=key)
                handle.result(timeout=30)
                answers.append((time.perf_counter() - began) * 1000)
                assert handle.run_id == run_id
        return {"lookup_first_ms": first_ms, "lookup_p50_ms": percentile(lookups, 0.5),
                "lookup_p99_ms": percentile(lookups, 0.99), "duplicate_answer_p50_ms": percentile(answers, 0.5),
                "duplicate_answer_p99_ms": percentile(answers, 0.99)}

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
