"""What every system in bench.peers provides, and the processes it runs.

A peer starts its processes (server, workers, broker), accepts submits of the 4-task
DAG (parser → validator ‖ summarizer → publisher; no-op tasks, each returning its own
end time), and gives back each run's last task's own end time. Its process trees are
what the CPU figures cover.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench._peers_install import PeerUnavailable
from taskplane.devstack.kafka import stop_process_group, tail

ROOT = Path(__file__).resolve().parent.parent
TASKS = ("parser", "validator", "summarizer", "publisher")


class Peer(ABC):
    """One system under test. ``start`` raises PeerUnavailable with the reason when it
    cannot run; ``submit`` is called from one thread per submitter."""

    name: str
    keyed = False  # submit with an idempotency key (``--keyed``); set before ``start``
    supports_keys = False  # the peer knows what a key is (else --keyed submits are plain)

    def __init__(self, cache_dir: Path, workdir: Path) -> None:
        self.cache_dir = cache_dir
        self.workdir = workdir
        self._processes: list[Service] = []

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def submit(self, index: int) -> Any:
        """Submit one run and return once the system acknowledged it; returns what
        ``end_times`` needs to find the run's result."""

    @abstractmethod
    def end_times(self, handles: Sequence[Any], timeout_s: float) -> list[float]:
        """Wall-clock end time (seconds) of each run's last task, in ``handles`` order."""

    def pids(self) -> list[int]:
        return [service.pid for service in self._processes]

    def add_history(self, runs: int) -> None:
        """Put ``runs`` finished runs on the system's log before it is measured
        (``--history``); a peer that cannot says so."""
        raise PeerUnavailable(f"{self.name}: --history is not implemented")

    def extra_figures(self) -> dict[str, float]:
        """Figures only this peer has (measured after its phases), by name."""
        return {}

    def launch(self, name: str, command: Sequence[str], env: dict[str, str] | None = None,
               cwd: Path | None = None) -> Service:
        service = Service(name, command, self.workdir / f"{name}.log", env, cwd or ROOT)
        self._processes.append(service)
        return service

    def stop(self) -> None:
        for service in reversed(self._processes):
            service.stop()
        self._processes.clear()


class Service:
    """A process of a peer (and its children, in its own process group), output to a
    log file in the workdir; stopped at exit if the harness ends without stopping it."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, env: dict[str, str] | None,
                 cwd: Path) -> None:
        self.name = name
        self.log_path = log_path
        with log_path.open("ab") as output:
            self.process = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=output,
                                            stderr=subprocess.STDOUT, cwd=cwd, env={**os.environ, **(env or {})},
                                            start_new_session=True)
        atexit.register(self.stop)

    @property
    def pid(self) -> int:
        return self.process.pid

    def check(self) -> None:
        """PeerUnavailable, with the log's last line, when the process has exited."""
        code = self.process.poll()
        if code is not None:
            last = tail(self.log_path, 1).strip() or "no output"
            raise PeerUnavailable(f"{self.name} exited with {code}: {last}")

    def stop(self) -> None:
        atexit.unregister(self.stop)
        if self.process.returncode is None:
            stop_process_group(self.process.pid, timeout=15, popen=self.process)  # type: ignore[arg-type]


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str,
               services: Sequence[Service] = ()) -> None:
    """Poll ``condition`` until true; PeerUnavailable when a service died or after the timeout."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        for service in services:
            service.check()
        if time.monotonic() > deadline:
            raise PeerUnavailable(f"{what} not ready within {timeout_s:.0f}s")
        time.sleep(0.1)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class HttpJson:
    """A keep-alive HTTP/1.1 connection per thread to one local port, JSON in and out."""

    def __init__(self, port: int, timeout_s: float = 60.0) -> None:
        self._port = port
        self._timeout = timeout_s
        self._local = threading.local()

    def request(self, method: str, path: str, body: Any = None,
                extra_headers: dict[str, str] | None = None) -> tuple[int, Any]:
        payload = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if payload is not None else {}
        headers.update(extra_headers or {})
        reused = getattr(self._local, "connection", None) is not None
        try:
            status, data = self._send(method, path, payload, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            # The server closed an idle keep-alive connection (hypercorn: after 5 s); the
            # request never reached it, so it is sent once more on a new connection.
            status, data = self._send(method, path, payload, headers)
        return status, json.loads(data) if data else None

    def _send(self, method: str, path: str, payload: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=self._timeout)
            self._local.connection = connection
        try:
            connection.request(method, path, payload, headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self._local.connection = None
            raise
