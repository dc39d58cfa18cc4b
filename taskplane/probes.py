"""The HTTP endpoints of every long-running process: ``/metrics``, ``/healthz``, ``/readyz``.

One small threaded server per process (a kubelet and Prometheus scrape the same port):
- ``/metrics``: the process's Prometheus registry;
- ``/healthz``: 200 while the process is alive and has not been asked to stop;
- ``/readyz``: 200 when every readiness check passes, else 503 with one reason a line.

A readiness check is a callable returning ``None`` when ready or the reason it is not.
Checks run on the server's thread, never on a processor loop, so they only read flags
the loop publishes (``ProcessorReadiness``) or ask an outside service (Postgres).

Ports: each role has its own default (``ROLE_PORTS``), so the processes of one checkout
never collide. When a role's default port is taken (a second checkout, another user),
the server binds a free port instead and logs the bound address; a port set explicitly
(``TASKPLANE_METRICS_PORT``) is used as given or refused with ``PortInUse``.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from taskplane.exceptions import UserInputError
from taskplane.metrics import MetricsSettings
from taskplane.streams.runtime_observer import RuntimeObserver

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], "str | None"]

# Default /metrics ports by role; pods set TASKPLANE_METRICS_PORT explicitly (deploy/).
ROLE_PORTS = {"orchestrator": 9464, "breaker": 9465, "projector": 9466, "worker": 9467, "tracer": 9468, "cron": 9469, "dispatcher": 9470}


class PortInUse(UserInputError):
    """The explicitly configured metrics port is taken (a user mistake: exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="TASKPLANE_METRICS_PORT")


class ProcessState:
    """Liveness of the process: alive until ``stopping()``; readiness checks added by the role."""

    def __init__(self, checks: Sequence[ReadinessCheck] = ()) -> None:
        self._stopping = threading.Event()
        self._checks = list(checks)

    def add_check(self, check: ReadinessCheck) -> None:
        self._checks.append(check)

    def stopping(self) -> None:
        self._stopping.set()

    def alive(self) -> bool:
        return not self._stopping.is_set()

    def not_ready(self) -> list[str]:
        """Reasons the process is not ready; empty when it is."""
        if self._stopping.is_set():
            return ["stopping"]
        reasons = []
        for check in self._checks:
            try:
                reason = check()
            except Exception as error:  # a failing check is a reason, never a crashed probe
                reason = f"readiness check failed: {error}"
            if reason:
                reasons.append(reason)
        return reasons


class ProcessorReadiness(RuntimeObserver):
    """Observes a processor runtime: ready once it has joined its group and restored every
    partition it was assigned, until it stops. Wraps the process's other observer (metrics),
    handing every hook on, so the runtime keeps taking one observer."""

    def __init__(self, inner: RuntimeObserver | None = None) -> None:
        self._inner = inner or RuntimeObserver()
        self._lock = threading.Lock()
        self._running = False
        self._joined = False
        self._restoring: set[int] = set()

    def check(self) -> str | None:
        with self._lock:
            if not self._running:
                return "processor loop not running"
            if not self._joined:
                return "waiting for a partition assignment"
            if self._restoring:
                return f"restoring partitions {sorted(self._restoring)}"
        return None

    def started(self, processor: str) -> None:
        with self._lock:
            self._running = True
        self._inner.started(processor)

    def stopped(self, processor: str) -> None:
        with self._lock:
            self._running = False
        self._inner.stopped(processor)

    def assigned(self, processor: str, partitions: list[int]) -> None:
        with self._lock:
            self._joined = True
            self._restoring.update(partitions)
        self._inner.assigned(processor, partitions)

    def restored(self, processor: str, keys: int, seconds: float) -> None:
        # The runtime restores everything an assignment gave it in one call, inside the
        # rebalance callback, before it consumes again.
        with self._lock:
            self._restoring.clear()
        self._inner.restored(processor, keys, seconds)

    def event(self, processor: str, event: object) -> None:
        self._inner.event(processor, event)

    def batch(self, processor: str, records: int, seconds: float) -> None:
        self._inner.batch(processor, records, seconds)

    def committed(self, processor: str, seconds: float) -> None:
        self._inner.committed(processor, seconds)

    def poison(self, processor: str, topic: str, error: str) -> None:
        self._inner.poison(processor, topic, error)

    def aborted(self, processor: str) -> None:
        self._inner.aborted(processor)


def postgres_check(database_url: str, timeout_s: int = 2) -> ReadinessCheck:
    """Ready when Postgres answers ``SELECT 1`` within the timeout."""

    def check() -> str | None:
        import psycopg

        try:
            with psycopg.connect(database_url, connect_timeout=timeout_s, autocommit=True) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            return f"postgres unreachable: {first_line}"
        return None

    return check


@dataclass(frozen=True, slots=True)
class Endpoints:
    """A running endpoint server; ``url`` is where /metrics, /healthz and /readyz answer."""

    server: ThreadingHTTPServer
    url: str

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve_endpoints(role: str, registry: CollectorRegistry, state: ProcessState,
                    settings: MetricsSettings | None = None) -> Endpoints | None:
    """Serve the three endpoints on a daemon thread; None when turned off (port 0)."""
    settings = settings or MetricsSettings()
    explicit = settings.port is not None
    port = settings.port if settings.port is not None else ROLE_PORTS.get(role, 0)
    if explicit and port == 0:
        return None
    handler = _handler(registry, state)
    try:
        server = ThreadingHTTPServer((settings.address, port), handler)
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise
        if explicit:
            raise PortInUse(f"TASKPLANE_METRICS_PORT: {settings.address}:{port} is in use "
                            "(set another port, or leave it unset for the role's default)") from None
        server = ThreadingHTTPServer((settings.address, 0), handler)
        log.warning("%s: default metrics port %d is in use (another taskplane on this host?); "
                    "bound %d instead", role, port, server.server_address[1])
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name=f"{role}-endpoints", daemon=True).start()
    host = str(server.server_address[0])
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{server.server_address[1]}"
    log.info("%s: /metrics /healthz /readyz on %s (bound %s)", role, url, f"{host}:{server.server_address[1]}")
    return Endpoints(server, url)


def _handler(registry: CollectorRegistry, state: ProcessState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept"))
                self._reply(200, encoder(registry), content_type)
            elif path == "/healthz":
                alive = state.alive()
                self._reply(200 if alive else 503, b"ok\n" if alive else b"stopping\n")
            elif path == "/readyz":
                reasons = state.not_ready()
                body = "ready\n" if not reasons else "".join(f"{reason}\n" for reason in reasons)
                self._reply(200 if not reasons else 503, body.encode())
            else:
                self._reply(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds: not logged
            return

    return Handler
