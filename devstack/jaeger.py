"""A real OTLP receiver for the trace tests and ``bench.traces``: Jaeger (v2, an
OpenTelemetry Collector build) with in-memory storage.

Built once from the Go module proxy (``go get -tool`` in a small module, then
``go build``) and cached like the Kafka jars under ``<cache_dir>/jaeger-<version>``;
a build takes minutes on a small host and prints its progress. Needs a Go toolchain
(``MissingToolError`` without one). Spans come in over OTLP/HTTP and are read back
from Jaeger's HTTP query API (``/api/traces/{trace_id}``).

Example::

    with LocalJaeger(Path("/tmp/j")) as jaeger:
        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = jaeger.otlp_http_endpoint
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from taskplane.devstack.kafka import (
    LocalStackError,
    ManagedServer,
    MissingToolError,
    Progress,
    StartupError,
    free_port,
    spawn,
    tail,
)
from taskplane.streams.settings import StackSettings

log = logging.getLogger(__name__)

JAEGER_VERSION = "v1.75.0"
JAEGER_MODULE = "github.com/jaegertracing/jaeger"

# The smallest pipeline that answers the tests: OTLP/HTTP in, memory storage, the
# query API; no batch processor (spans are stored as they come: the lag bench reads
# them), the collector's own metrics (received spans) on a Prometheus port.
_CONFIG = """service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {metrics}
    logs:
      level: warn
extensions:
  jaeger_query:
    # Its own spans would go to an OTLP receiver on :4317 that is not there: shutdown
    # then waited out a 10 s export timeout, which every test and bench paid.
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{query}
    grpc:
      endpoint: 127.0.0.1:{query_grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: {max_traces}
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


def require_go() -> str:
    go = shutil.which("go")
    if not go:
        raise MissingToolError("go not found (needed once to build Jaeger from the Go module proxy): "
                               "install Go 1.24+ (https://go.dev/doc/install, or apt-get install golang)")
    return go


def jaeger_binary(cache_dir: Path, version: str = JAEGER_VERSION, progress: Progress | None = None) -> Path:
    """The Jaeger binary of ``version``, built the first time (minutes)."""
    home = cache_dir / f"jaeger-{version}"
    binary = home / "jaeger"
    if (home / ".complete").exists() and binary.exists():
        return binary
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent build (two test sessions) waits here
        if (home / ".complete").exists() and binary.exists():
            return binary
        go = require_go()
        say = progress or (lambda line: log.warning("%s", line))
        build = home / "build"
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir()
        env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
        say(f"building Jaeger {version} from the Go module proxy into {binary} (once; minutes)")
        steps = [
            [go, "mod", "init", "taskplane.dev/jaeger"],
            [go, "get", "-tool", f"{JAEGER_MODULE}/cmd/jaeger@{version}"],
            [go, "build", "-o", str(binary), f"{JAEGER_MODULE}/cmd/jaeger"],
        ]
        for cmd in steps:
            _run_step(cmd, build, env, say)
        (home / ".complete").write_text(version + "\n")
        say(f"Jaeger {version} built")
    return binary


def _run_step(cmd: list[str], cwd: Path, env: dict[str, str], say: Progress) -> None:
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    output: list[str] = []
    downloads = 0
    for line in proc.stdout:
        output.append(line.rstrip())
        if line.startswith("go: downloading"):
            downloads += 1
            if downloads % 50 == 0:
                say(f"  {downloads} modules downloaded")
    if proc.wait() != 0:
        raise LocalStackError(f"{' '.join(cmd[:3])} failed:\n" + "\n".join(output[-15:]))
    say(f"  {' '.join(cmd[1:3])}: {time.monotonic() - started:.0f} s")


class LocalJaeger(ManagedServer):
    """One Jaeger process on 127.0.0.1, free ports, spans kept in memory."""

    def __init__(self, data_dir: Path, *, cache_dir: Path | None = None, version: str = JAEGER_VERSION,
                 max_traces: int = 200_000, start_timeout: float = 60.0, detached: bool = False,
                 progress: Progress | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.cache_dir = cache_dir or StackSettings().cache_dir
        self.version = version
        self.max_traces = max_traces
        self.start_timeout = start_timeout
        self.detached = detached
        self.progress = progress
        self._proc: subprocess.Popen[bytes] | None = None
        self.otlp_port = self.query_port = self.metrics_port = 0

    @property
    def otlp_http_endpoint(self) -> str:
        """The value for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter adds /v1/traces)."""
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "jaeger.log"

    def start(self) -> LocalJaeger:
        binary = jaeger_binary(self.cache_dir, self.version, self.progress)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.otlp_port, self.query_port, self.metrics_port = free_port(), free_port(), free_port()
        config = self.data_dir / "config.yaml"
        config.write_text(_CONFIG.format(metrics=self.metrics_port, query=self.query_port,
                                         query_grpc=free_port(), otlp=self.otlp_port, max_traces=self.max_traces))
        cmd = [str(binary), "--config", str(config)]
        return self._launched(spawn(cmd, self.log_path, detached=self.detached, cwd=self.data_dir))

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StartupError(f"jaeger exited with {self._proc.returncode}:\n{tail(self.log_path)}")
            try:
                self.services()
                urllib.request.urlopen(f"{self.otlp_http_endpoint}/v1/traces", timeout=1).close()
            except urllib.error.HTTPError:  # the receiver answers (a GET is refused): up
                return
            except OSError:
                time.sleep(0.2)
                continue
            return
        raise StartupError(f"jaeger not ready after {self.start_timeout:.0f}s:\n{tail(self.log_path)}")

    # ------------------------------------------------------------ the query API

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.query_url}{path}", timeout=10) as response:
            return json.load(response)

    def services(self) -> list[str]:
        return list(self._get("/api/services").get("data") or [])

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """The spans of trace ``trace_id`` (32 hex digits) as Jaeger stores them after its
        query adjusters (which drop byte-identical copies); [] when it has none."""
        try:
            data = self._get(f"/api/traces/{trace_id}").get("data") or []
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise
        return [span for trace in data for span in trace.get("spans", [])]

    def accepted_spans(self) -> int:
        """Spans the OTLP receiver took since start (its own counter: every copy counts)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as response:
            text = response.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith("otelcol_receiver_accepted_spans") and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)


def main() -> None:
    """``python -m taskplane.devstack.jaeger``: build (once) and print the binary's path;
    ``make test`` runs it before pytest, so no test waits minutes for a build."""
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(jaeger_binary(StackSettings().cache_dir, progress=lambda line: print(line, flush=True)))
    except LocalStackError as error:
        print(f"warning: Jaeger not built: {error} (the trace tests will say so)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
