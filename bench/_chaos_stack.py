"""A whole taskplane deployment as separate, killable processes, for bench.failover and
bench.chaos: a broker of its own (killed and restarted on its data dir and port),
Postgres, the orchestrator, the breaker, the projector and worker processes, each
restartable like a pod (same instance id, same worker name).

    with ChaosStack(workdir, systems={"sleeper": TOOLS}, workers=3) as stack:
        stack.kill("orchestrator"); stack.start("orchestrator")
        stack.kill_broker(); stack.restart_broker()
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from taskplane.devstack.cluster import LocalKafkaCluster
from taskplane.devstack.kafka import LocalKafka
from taskplane.devstack.postgres import LocalPostgres
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import EventLog, WorkerProcess, worker_env
from taskplane.testing.progress import Progress

ROOT = Path(__file__).resolve().parent.parent  # the checkout: processes run from it, as the tests do

PROCESSORS = ("orchestrator", "breaker", "dispatcher", "cron", "projector")


class Component:
    """One processor process (``taskplane processor run NAME``); ``start`` waits for its
    "NAME running" line."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log_dir: Path,
                 label: str | None = None) -> None:
        self.name = label or name  # orchestrator-1: one of several instances of a processor
        self._ready = f"{name} running\n".encode()
        self._argv = argv
        self._env = {**os.environ, **env}
        self.log = log_dir / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> Component:
        already = self.log.read_bytes().count(self._ready) if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(self._argv, cwd=ROOT, env=self._env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while self.log.read_bytes().count(self._ready) <= already:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class ChaosStack:
    def __init__(self, workdir: Path, systems: Mapping[str, str], workers: int = 3, concurrency: int = 4,
                 extra_env: Mapping[str, str] | None = None, brokers: int = 1, orchestrators: int = 1) -> None:
        self.workdir = workdir
        self.systems = dict(systems)
        self.worker_count = workers
        self.concurrency = concurrency
        self.extra_env = dict(extra_env or {})
        self.topics = Topics(f"chaos{uuid.uuid4().hex[:6]}")
        # A shared, overloaded machine took over 90 s (the default) to restart a broker.
        self.broker = LocalKafka(workdir / "kafka", cache_dir=StackSettings().cache_dir, start_timeout=300)
        # brokers > 1: a KRaft cluster (bench/_chaos_cluster.py kills its nodes).
        self.cluster = LocalKafkaCluster(workdir / "kafka-cluster", nodes=brokers, start_timeout=300) \
            if brokers > 1 else None
        self.orchestrators = orchestrators
        self.postgres = LocalPostgres(workdir / "postgres")
        self.components: dict[str, Component] = {}
        self.workers: list[WorkerProcess] = []

    # ------------------------------------------------------------ lifecycle

    @property
    def bootstrap_servers(self) -> str:
        return (self.cluster or self.broker).bootstrap_servers

    def __enter__(self) -> ChaosStack:
        (self.cluster or self.broker).start()
        self.postgres.start()
        self.database_url = self.postgres.url
        self.kafka: dict[str, Any] = StackSettings().kafka_config(self.bootstrap_servers, {"log_level": 0})
        ensure_topics(kafka_clients.admin(self.kafka), self.topics, catalog())
        self.publisher = Publisher({**self.kafka, "message.timeout.ms": 300_000}, self.topics)
        self.env = {**worker_env(self.bootstrap_servers, self.database_url, self.topics.prefix),
                    "TASKPLANE_METRICS_PORT": "0", **self.extra_env}
        env = {**self.env, "TASKPLANE_RUNTIME_TICK_INTERVAL_MS": "100", "TASKPLANE_RUNTIME_MAX_BATCH_MS": "50"}
        for name in PROCESSORS:  # endpoints and prefix from the environment, like a pod
            for index in range(self.orchestrators if name == "orchestrator" else 1):
                label = name if index == 0 else f"{name}-{index}"
                argv = [sys.executable, "-m", "taskplane.cli", "processor", "run", name, "--instance",
                        f"{name}-{index}"]
                self.components[label] = Component(name, argv, env, self.workdir, label).start()
        self.log = EventLog(self.kafka, self.topics.events)
        self.progress = Progress(self.kafka, self.topics, self.database_url, "readmodel", list(self.systems))
        return self

    def start_workers(self) -> None:
        for index in range(self.worker_count):
            self.workers.append(WorkerProcess(f"w{index}", self.systems, self.env, self.workdir,
                                              self.concurrency).start())

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for worker in self.workers:
            worker.stop(10)
        for component in self.components.values():
            component.stop()
        with contextlib.suppress(Exception):
            self.log.close()
            self.progress.close()
        (self.cluster or self.broker).stop()
        self.postgres.stop()

    # ------------------------------------------------------------ chaos

    def instances(self, kind: str) -> list[str]:
        """The components of one kind: ``orchestrator``, ``orchestrator-1``, ..."""
        return [label for label in self.components if label == kind or label.startswith(f"{kind}-")]

    def kill(self, name: str) -> None:
        self.components[name].kill()

    def start(self, name: str) -> None:
        self.components[name].start()

    def worker_of(self, worker_id: str) -> WorkerProcess | None:
        return next((w for w in self.workers if w.owns(worker_id)), None)

    def restart_worker(self, worker: WorkerProcess) -> WorkerProcess:
        worker.stop(1)
        fresh = WorkerProcess(worker.name, self.systems, self.env, self.workdir, self.concurrency).start()
        self.workers[self.workers.index(worker)] = fresh
        return fresh

    def kill_broker(self) -> None:
        self.broker.kill()

    def restart_broker(self) -> None:
        self.broker.start()

    def check(self) -> None:
        """Raise when a component died by itself (not killed by the bench)."""
        dead = [name for name, c in self.components.items() if not c.alive()]
        if dead:
            raise RuntimeError(f"died: {dead}; " + "; ".join(
                self.components[n].log.read_text()[-1500:] for n in dead))


def past_the_killed(stack: ChaosStack, before: dict[str, int]) -> dict[str, int]:
    """``before``, moved past what the killed process committed after it was read (a
    transaction in flight at the kill): read while its successor is still booting, so
    only the successor's own commits count as its progress. Unreadable positions (an
    offset commit still pending) keep ``before``."""
    now = stack.progress.positions(timeout_s=0.5)
    return {name: max(position, now.get(name, -1)) for name, position in before.items()}
