"""The pieces the demo (and the end-to-end tests) assemble a whole pipeline from:
manifests with overrides, processors in threads, worker processes, an event follower.

    with ProcessorThreads(kafka, topics, database_url, schema) as processors, \\
            EventLog(kafka, topics.events) as log:
        worker = WorkerProcess("w1", {"payment-processor": "taskplane.demo.payments"}, env)
        worker.start()
        log.wait_for(lambda events: ..., timeout_s=30)
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from prometheus_client import CollectorRegistry

from taskplane.contract.plan import SystemDefinition, SystemPlan
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import SerdeError
from taskplane.streams.serde import Meta, Serde
from taskplane.streams.topics import Topics

log = logging.getLogger(__name__)
T = TypeVar("T")


# ---------------------------------------------------------------- manifests


def manifest_with(base: Mapping[str, Any] | str | Path, execution: Mapping[str, Any] | None = None,
                  extra_tools: Mapping[str, list[Any]] | None = None,
                  breakers: Mapping[str, Any] | None = None) -> str:
    """YAML text of a manifest (a dict, YAML text, or a file) with ``spec.execution``
    and ``spec.breakers`` fields overridden and tools prepended to agents by name."""
    if isinstance(base, Path):
        data = yaml.safe_load(base.read_text())
    elif isinstance(base, str):
        data = yaml.safe_load(base)
    else:
        data = yaml.safe_load(yaml.safe_dump(dict(base)))  # deep copy
    spec = data["spec"]
    spec["execution"] = {**spec.get("execution", {}), **(execution or {})}
    if breakers:
        spec["breakers"] = {**spec.get("breakers", {}), **breakers}
    for agent in spec["agents"]:
        agent["tools"] = list((extra_tools or {}).get(agent["name"], [])) + list(agent.get("tools", []))
    return str(yaml.safe_dump(data, sort_keys=False))


def compile_manifest(text: str) -> SystemDefinition:
    """Validate and compile YAML text (``taskplane.manifest``) to a system definition."""
    from taskplane.manifest import load_manifest_text

    manifest = load_manifest_text(text)
    version = manifest.version()
    plan: SystemPlan = manifest.to_plan(version)
    return SystemDefinition(plan.name, version, plan, text)


def example_manifest(name: str) -> Path:
    """The manifest of a system shipped in taskplane._examples (the demo's)."""
    from taskplane._examples import manifest_path

    return manifest_path(name)


# ---------------------------------------------------------------- processors


class ProcessorThreads:
    """The orchestrator, the breaker, the cron processor, the dispatcher and the projector, each in a thread of this process.
    ``failures`` holds any exception a processor loop died of."""

    def __init__(self, kafka_config: dict[str, Any], topics: Topics, database_url: str | None,
                 read_model_schema: str | None = None, registry: CollectorRegistry | None = None,
                 tick_interval_ms: int = 100) -> None:
        from taskplane.processors.breaker.app import breaker_runtime
        from taskplane.processors.cron.app import cron_runtime
        from taskplane.processors.dispatch.app import dispatcher_runtime
        from taskplane.processors.orchestrator.app import orchestrator_runtime
        from taskplane.streams.runtime_settings import RuntimeSettings

        observer = None
        if registry is not None:
            from taskplane.metrics import PrometheusObserver

            observer = PrometheusObserver(registry)
        settings = RuntimeSettings(instance_id=f"{topics.prefix}-0", max_batch_ms=50,
                                   tick_interval_ms=tick_interval_ms, session_timeout_ms=6_000)
        self._runners: list[tuple[str, Any]] = [
            ("orchestrator", orchestrator_runtime(kafka_config, topics, settings, observer)),
            ("breaker", breaker_runtime(kafka_config, topics, settings, observer)),
            ("cron", cron_runtime(kafka_config, topics, settings, observer)),
            ("dispatcher", dispatcher_runtime(kafka_config, topics, settings, observer)),
        ]
        if database_url is not None:
            from taskplane.processors.projector.app import Projector, ProjectorSettings

            projector_settings = ProjectorSettings(schema_name=read_model_schema or "readmodel",
                                                   instance_id=f"{topics.prefix}-projector",
                                                   max_batch_ms=100, session_timeout_ms=6_000)
            self._runners.append(("projector", Projector(kafka_config, topics, database_url,
                                                         projector_settings, registry)))
        self._threads: list[threading.Thread] = []
        self.failures: dict[str, BaseException] = {}

    def runtime(self, name: str) -> Any:
        return next(runner for label, runner in self._runners if label == name)

    def start(self) -> ProcessorThreads:
        for name, runner in self._runners:
            thread = threading.Thread(target=self._run, args=(name, runner), name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _run(self, name: str, runner: Any) -> None:
        try:
            runner.run()
        except BaseException as error:  # reported by check(), not lost in a thread
            log.exception("%s died", name)
            self.failures[name] = error

    def check(self) -> None:
        if self.failures:
            name, error = next(iter(self.failures.items()))
            raise RuntimeError(f"processor {name} died: {error!r}") from error

    def stop(self, timeout_s: float = 15.0) -> None:
        for _name, runner in self._runners:
            runner.stop()
        for thread in self._threads:
            thread.join(timeout_s)
        self._runners.clear()  # their Kafka clients go with them

    def __enter__(self) -> ProcessorThreads:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- workers


class WorkerProcess:
    """A worker process (``python -m taskplane.demo.worker``) serving one or more
    systems, each with its module of agents and tools. Killable for real."""

    def __init__(self, name: str, serves: Mapping[str, str], env: Mapping[str, str],
                 log_dir: Path | None = None, concurrency: int = 4) -> None:
        self.name = name
        self.serves = dict(serves)
        self._env = {**os.environ, **env}
        self._log_dir = log_dir
        self._concurrency = concurrency
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    def worker_id(self, system: str) -> str:
        return f"{self.name}.{system}"

    def owns(self, worker_id: str) -> bool:
        return worker_id in {self.worker_id(system) for system in self.serves}

    def start(self) -> WorkerProcess:
        command = [sys.executable, "-m", "taskplane.demo.worker", "--name", self.name,
                   "--concurrency", str(self._concurrency)]
        for system, module in self.serves.items():
            command += ["--serve", f"{system}={module}"]
        output: Any = subprocess.DEVNULL
        if self._log_dir is not None:
            self._log_file = open(self._log_dir / f"{self.name}.log", "ab")  # noqa: SIM115
            output = self._log_file
        self.process = subprocess.Popen(command, env=self._env, stdout=output, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no lease release, no goodbye."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
            assert self.process is not None
            self.process.wait(10)

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM (leases are released), then SIGKILL if it lingers."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def worker_env(bootstrap: str, database_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """Environment of a worker process: endpoints and prefix. (A killed worker's `work`
    partitions move after the broker's KIP-848 session timeout, see docs/failover.md.)"""
    return {
        "TASKPLANE_BOOTSTRAP_SERVERS": bootstrap,
        "TASKPLANE_DATABASE_URL": database_url,
        "TASKPLANE_TOPIC_PREFIX": prefix,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


# ---------------------------------------------------------------- the event log


class EventLog:
    """Follows the ``events`` topic from the beginning in a background thread
    (read_committed: only what the orchestrator committed)."""

    def __init__(self, kafka_config: dict[str, Any], topic: str, serde: Serde | None = None) -> None:
        self._topic = topic
        self._serde = serde or Serde()
        self._records: list[tuple[Meta, Any]] = []
        self._next: dict[int, int] = {}  # partition -> offset after the last record read
        # partition -> the consumer's position: past the transaction markers that end a
        # partition too (one per producer id whose commit ended there), never delivered
        self._position: dict[int, int] = {}
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._consumer = kafka_clients.consumer(kafka_config, f"eventlog-{topic}-{os.getpid()}")
        # Through the consumer: the leader cached, the first offset query is not put on a 500 ms timer.
        metadata = self._consumer.list_topics(topic, timeout=30).topics[topic]
        self._partitions = [TopicPartition(topic, p) for p in metadata.partitions]
        self._consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions])
        self._thread = threading.Thread(target=self._follow, name=f"eventlog-{topic}", daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        while not self._stop.is_set():
            batch = self._consumer.consume(500, 0.1)
            decoded = []
            read: dict[int, int] = {}
            for record in batch:
                if record.error() is not None:
                    continue
                read[record.partition()] = record.offset() + 1
                if record.value() is None:
                    continue
                try:
                    decoded.append(self._serde.decode(record.value()))
                except SerdeError as error:
                    log.warning("events: undecodable record: %s", error)
            positions = {tp.partition: tp.offset for tp in self._consumer.position(self._partitions)
                         if tp.offset >= 0}
            if read or positions != self._position:
                with self._changed:
                    self._records.extend(decoded)
                    self._next.update(read)
                    self._position = positions
                    self._changed.notify_all()

    def records(self) -> list[tuple[Meta, Any]]:
        with self._changed:
            return list(self._records)

    def reached(self, ends: dict[int, int]) -> bool:
        """Read up to ``ends`` (high watermarks by partition), by the consumer's position:
        the last offsets of a partition may be transaction markers, never delivered."""
        with self._changed:
            return all(max(self._next.get(p, 0), self._position.get(p, 0)) >= high for p, high in ends.items())

    def record_ends(self) -> dict[int, int]:
        """Per partition, the offset after the last record read (what a reader that stores
        ``offset + 1`` of its last record, as the projector does, has stored at the end)."""
        with self._changed:
            return dict(self._next)

    def all_events(self) -> list[Any]:
        with self._changed:
            return [event for _meta, event in self._records]

    def events(self, kind: type[T], run_id: str | None = None) -> list[T]:
        """Events of one type (of one run), in log order per partition."""
        with self._changed:
            return [e for _m, e in self._records
                    if isinstance(e, kind) and (run_id is None or getattr(e, "run_id", None) == run_id)]

    def wait_for(self, condition: Callable[[EventLog], T], timeout_s: float,
                 also: Callable[[], None] | None = None) -> T:
        """Wait until ``condition(self)`` is truthy and return it; ``also`` runs on each
        wake-up (to raise when a processor died). TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            if also is not None:
                also()
            result = condition(self)
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"condition not met within {timeout_s:.0f}s")
            with self._changed:
                self._changed.wait(min(remaining, 0.25))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._consumer.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
