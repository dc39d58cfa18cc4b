"""The development stack: where Kafka and Postgres are, and starting them if needed.

``resolve_endpoints()`` is what other components call: environment variables
first (``TASKPLANE_BOOTSTRAP_SERVERS``, ``TASKPLANE_DATABASE_URL``), then the
stack started by ``taskplane dev up``, recorded in ``<cache_dir>/devstack.json``.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

from taskplane.devstack.cluster import LocalKafkaCluster
from taskplane.devstack.kafka import (
    LocalKafka,
    LocalStackError,
    Progress,
    pid_alive,
    pid_cmdline,
    stop_process_group,
)
from taskplane.devstack.postgres import LocalPostgres
from taskplane.devstack.secure import (
    ADMIN,
    SecureFiles,
    client_config,
    create_principals,
    secure_files,
    secured,
    write_env_files,
)
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics, catalog, ensure_topics


class DevStackNotRunning(LocalStackError):
    """No endpoint in the environment and no running dev stack."""


class Endpoints(NamedTuple):
    bootstrap_servers: str
    database_url: str


@dataclass(frozen=True, slots=True)
class ManagedProcess:
    """A server process this stack started: its group leader and its data dir."""

    name: str
    pid: int
    data_dir: str

    def alive(self) -> bool:
        # The data dir in the command line guards against a recycled pid.
        return pid_alive(self.pid) and self.data_dir in pid_cmdline(self.pid)


@dataclass(frozen=True, slots=True)
class DevStack:
    bootstrap_servers: str
    database_url: str
    processes: tuple[ManagedProcess, ...]
    started_at: float
    secure_dir: str = ""  # a secured stack: the per-role <role>.env files live here

    def running(self) -> bool:
        return all(process.alive() for process in self.processes)


def state_path(settings: StackSettings) -> Path:
    return settings.cache_dir / "devstack.json"


def read_state(settings: StackSettings) -> DevStack | None:
    try:
        raw = json.loads(state_path(settings).read_text())
    except (OSError, ValueError):
        return None
    return DevStack(
        bootstrap_servers=raw["bootstrap_servers"],
        database_url=raw["database_url"],
        processes=tuple(ManagedProcess(**process) for process in raw["processes"]),
        started_at=raw["started_at"],
        secure_dir=raw.get("secure_dir", ""),
    )


def _write_state(settings: StackSettings, stack: DevStack) -> None:
    path = state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(asdict(stack), indent=2))
    temporary.replace(path)


def running_stack(settings: StackSettings | None = None) -> DevStack | None:
    stack = read_state(settings or StackSettings())
    return stack if stack is not None and stack.running() else None


def resolve_endpoints(settings: StackSettings | None = None) -> Endpoints:
    """(bootstrap servers, database URL): env vars first, then the running dev stack."""
    settings = settings or StackSettings()
    bootstrap, database = settings.bootstrap_servers, settings.database_dsn()
    if bootstrap and database:
        return Endpoints(bootstrap, database)
    stack = running_stack(settings)
    if stack is None:
        missing = [
            name
            for name, value in (
                ("TASKPLANE_BOOTSTRAP_SERVERS", bootstrap),
                ("TASKPLANE_DATABASE_URL", database),
            )
            if not value
        ]
        raise DevStackNotRunning(
            f"no dev stack running and {' and '.join(missing)} not set: run `taskplane dev up`"
        )
    return Endpoints(bootstrap or stack.bootstrap_servers, database or stack.database_url)


def up(
    settings: StackSettings, progress: Progress | None = None, brokers: int = 1, secure: bool = False
) -> tuple[DevStack, bool]:
    """Start the stack detached (it outlives this process). Returns (stack, started_now).
    ``brokers`` > 1: a KRaft cluster of that many nodes (devstack/cluster.py);
    ``secure``: SASL/SCRAM over TLS with ACLs per role (devstack/secure.py)."""
    existing = running_stack(settings)
    if existing is not None:
        return existing, False
    if read_state(settings) is not None:  # a half-dead stack: clear it first
        down(settings)
    root = settings.cache_dir / "devstack"
    processes: list[ManagedProcess] = []
    with ExitStack() as undo:  # stop what was started if a later part fails
        bootstrap = settings.bootstrap_servers
        secured_dir = ""
        if not bootstrap and (brokers > 1 or secure):
            files = secure_files(root / "secure") if secure else None
            cluster = LocalKafkaCluster(
                root / f"kafka-{brokers}{'-secure' if secure else ''}", nodes=brokers,
                version=settings.local_kafka_version, cache_dir=settings.cache_dir, detached=True,
                progress=progress, customize=secured(files) if files else None,
            ).start()  # fmt: skip
            undo.callback(cluster.stop)
            for node_id, node in cluster.nodes.items():
                assert node.pid is not None
                processes.append(ManagedProcess(f"kafka-{node_id}", node.pid, str(node.data_dir)))
            bootstrap = cluster.bootstrap_servers
            if files is not None:
                _principals(settings, files, bootstrap)
                secured_dir = str(files.credentials.parent)
        elif not bootstrap:
            kafka = LocalKafka(
                root / "kafka",
                version=settings.local_kafka_version,
                cache_dir=settings.cache_dir,
                detached=True,
                progress=progress,
            ).start()
            undo.callback(kafka.stop)
            assert kafka.pid is not None
            processes.append(ManagedProcess("kafka", kafka.pid, str(kafka.data_dir)))
            bootstrap = kafka.bootstrap_servers
        database = settings.database_dsn()
        if not database:
            postgres = LocalPostgres(root / "postgres", detached=True).start()
            undo.callback(postgres.stop)
            assert postgres.pid is not None
            processes.append(ManagedProcess("postgres", postgres.pid, str(postgres.data_dir)))
            database = postgres.url
        stack = DevStack(bootstrap, database, tuple(processes), time.time(), secured_dir)
        _write_state(settings, stack)
        undo.pop_all()
    return stack, True


def _principals(settings: StackSettings, files: SecureFiles, bootstrap: str) -> None:
    """The catalog's topics, a user per role with its ACLs, and the env files."""
    from taskplane.streams import kafka_clients

    admin = {"bootstrap.servers": bootstrap, **client_config(files, ADMIN), "log_level": 0}
    topics = Topics(settings.topic_prefix)
    ensure_topics(kafka_clients.admin(admin), topics, catalog())
    create_principals(admin, files, topics)
    write_env_files(files, files.credentials.parent)


def down(settings: StackSettings, timeout: float = 20.0) -> list[str]:
    """Stop every process the dev stack started; the names of those stopped."""
    stack = read_state(settings)
    stopped: list[str] = []
    if stack is not None:
        live = [process for process in reversed(stack.processes) if process.alive()]

        def stop(process: ManagedProcess) -> None:
            sig = signal.SIGINT if process.name == "postgres" else signal.SIGTERM
            stop_process_group(process.pid, sig=sig, timeout=timeout)

        # At once: a cluster's nodes stopped in turn would leave the last ones waiting on
        # a quorum that is gone for their controlled shutdown.
        threads = [threading.Thread(target=stop, args=(process,)) for process in live]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stopped = [process.name for process in live]
    state_path(settings).unlink(missing_ok=True)
    return stopped


@contextmanager
def ensure_stack(
    settings: StackSettings | None = None, progress: Progress | None = None
) -> Iterator[Endpoints]:
    """Endpoints for the duration of the block: from the env or the running dev
    stack, else a throwaway local stack that is stopped (and deleted) on exit."""
    settings = settings or StackSettings()
    try:
        endpoints: Endpoints | None = resolve_endpoints(settings)
    except DevStackNotRunning:
        endpoints = None
    if endpoints is not None:
        yield endpoints
        return
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="taskplane-stack-"))
        stack.callback(shutil.rmtree, scratch, ignore_errors=True)
        bootstrap = settings.bootstrap_servers
        if not bootstrap:
            kafka = LocalKafka(
                scratch / "kafka",
                version=settings.local_kafka_version,
                cache_dir=settings.cache_dir,
                progress=progress,
            )
            stack.enter_context(kafka)
            bootstrap = kafka.bootstrap_servers
        database = settings.database_dsn()
        if not database:
            postgres = stack.enter_context(LocalPostgres(scratch / "postgres"))
            database = postgres.url
        yield Endpoints(bootstrap, database)
