"""/metrics, /healthz and /readyz: what each answers, port defaults and collisions,
and readiness of a real orchestrator runtime against the session broker."""

from __future__ import annotations

import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter

from taskplane.metrics import MetricsSettings
from taskplane.probes import (
    ROLE_PORTS,
    PortInUse,
    ProcessorReadiness,
    ProcessState,
    postgres_check,
    serve_endpoints,
)
from taskplane.processors.orchestrator.app import orchestrator_runtime
from taskplane.streams.runtime_observer import RuntimeObserver
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.topics import Topics, catalog, ensure_topics


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError) as error:  # not listening yet
        return 0, str(error)


@pytest.fixture
def occupied_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_three_endpoints_answer_from_one_port() -> None:
    registry = CollectorRegistry()
    Counter("probe_test_things", "Things.", registry=registry).inc(3)
    waiting = ["warming up"]
    state = ProcessState([lambda: waiting[0] if waiting else None])
    server = serve_endpoints("test", registry, state, MetricsSettings(port=_free_port()))
    assert server is not None
    try:
        assert _get(f"{server.url}/healthz") == (200, "ok\n")
        assert _get(f"{server.url}/readyz") == (503, "warming up\n")
        waiting.clear()
        assert _get(f"{server.url}/readyz") == (200, "ready\n")
        status, text = _get(f"{server.url}/metrics")
        assert status == 200 and "probe_test_things_total 3.0" in text
        assert _get(f"{server.url}/nothing")[0] == 404
        state.stopping()
        assert _get(f"{server.url}/healthz") == (503, "stopping\n")
        assert _get(f"{server.url}/readyz") == (503, "stopping\n")
    finally:
        server.close()


def test_a_failing_check_is_a_reason_not_a_crash() -> None:
    def broken() -> str | None:
        raise RuntimeError("boom")

    assert ProcessState([broken]).not_ready() == ["readiness check failed: boom"]


def test_every_role_has_its_own_default_port() -> None:
    assert len(set(ROLE_PORTS.values())) == len(ROLE_PORTS)
    assert set(ROLE_PORTS) == {"orchestrator", "breaker", "projector", "worker", "tracer", "cron", "dispatcher"}


def test_a_taken_default_port_falls_back_to_a_free_one_and_logs_it(
    occupied_port: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(ROLE_PORTS, "orchestrator", occupied_port)
    caplog.set_level(logging.INFO, logger="taskplane.probes")
    server = serve_endpoints("orchestrator", CollectorRegistry(), ProcessState(), MetricsSettings())
    assert server is not None
    try:
        bound = int(server.url.rsplit(":", 1)[1])
        assert bound != occupied_port
        assert _get(f"{server.url}/healthz")[0] == 200
        assert f"default metrics port {occupied_port} is in use" in caplog.text
        assert server.url in caplog.text
    finally:
        server.close()


def test_an_explicit_port_in_use_is_refused_in_one_line(occupied_port: int) -> None:
    with pytest.raises(PortInUse) as raised:
        serve_endpoints("worker", CollectorRegistry(), ProcessState(), MetricsSettings(port=occupied_port))
    assert "TASKPLANE_METRICS_PORT" in str(raised.value) and "\n" not in str(raised.value)


def test_port_zero_turns_the_endpoints_off() -> None:
    assert serve_endpoints("worker", CollectorRegistry(), ProcessState(), MetricsSettings(port=0)) is None


def test_processor_readiness_follows_the_runtime_hooks() -> None:
    seen: list[str] = []

    class Inner(RuntimeObserver):
        def event(self, processor: str, event: object) -> None:
            seen.append(f"event {event}")

        def restored(self, processor: str, keys: int, seconds: float) -> None:
            seen.append(f"restored {keys}")

        def committed(self, processor: str, seconds: float) -> None:
            seen.append(f"committed {seconds}")

    readiness = ProcessorReadiness(Inner())
    assert readiness.check() == "processor loop not running"
    readiness.started("orchestrator")
    assert readiness.check() == "waiting for a partition assignment"
    readiness.assigned("orchestrator", [2, 0])
    assert readiness.check() == "restoring partitions [0, 2]"
    readiness.restored("orchestrator", 7, 0.1)
    assert readiness.check() is None
    readiness.event("orchestrator", "x")
    readiness.committed("orchestrator", 0.5)
    readiness.stopped("orchestrator")
    assert readiness.check() == "processor loop not running"
    assert seen == ["restored 7", "event x", "committed 0.5"]


def test_an_instance_without_partitions_is_ready_once_it_joined() -> None:
    readiness = ProcessorReadiness()
    readiness.started("breaker")
    readiness.assigned("breaker", [])
    assert readiness.check() is None


@pytest.mark.postgres
def test_postgres_check(database_url: str) -> None:
    assert postgres_check(database_url)() is None
    reason = postgres_check(f"postgresql://nobody@127.0.0.1:{_free_port()}/none", timeout_s=1)()
    assert reason is not None and reason.startswith("postgres unreachable: ")


@pytest.mark.kafka
def test_an_orchestrator_is_ready_after_its_partitions_are_restored(
    kafka_config: dict[str, Any], unique_prefix: str
) -> None:
    topics = Topics(unique_prefix)
    ensure_topics_for(kafka_config, topics)
    readiness = ProcessorReadiness()
    state = ProcessState([readiness.check])
    server = serve_endpoints("orchestrator", CollectorRegistry(), state, MetricsSettings(port=_free_port()))
    assert server is not None
    runtime = orchestrator_runtime(kafka_config, topics, RuntimeSettings(instance_id=unique_prefix),
                                   observer=readiness)
    assert _get(f"{server.url}/readyz") == (503, "processor loop not running\n")
    thread = threading.Thread(target=runtime.run, daemon=True)
    thread.start()
    try:
        assert _wait_status(f"{server.url}/readyz", 200) == "ready\n"
    finally:
        runtime.stop()
        thread.join(60)
        server.close()
    assert readiness.check() == "processor loop not running"


def ensure_topics_for(kafka_config: dict[str, Any], topics: Topics) -> None:
    from confluent_kafka.admin import AdminClient

    ensure_topics(AdminClient(kafka_config), topics, catalog())


def _wait_status(url: str, status: int, timeout_s: float = 120) -> str:
    """Poll until ``url`` answers ``status`` (an event to wait for, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got, body = _get(url)
        if got == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still answers {got}: {body}")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("args", [["processor", "run", "orchestrator"], ["processor", "run", "breaker"],
                                  ["worker", "run", "--system", "anything"]])
def test_a_taken_explicit_port_is_one_line_and_exit_2_before_connecting(
    args: list[str], occupied_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from taskplane.cli import app

    monkeypatch.setenv("TASKPLANE_METRICS_PORT", str(occupied_port))
    monkeypatch.setenv("TASKPLANE_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # never reached
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert lines == [f"error: TASKPLANE_METRICS_PORT: 127.0.0.1:{occupied_port} is in use "
                     "(set another port, or leave it unset for the role's default)"]
    assert "Traceback" not in result.output


@pytest.mark.kafka
@pytest.mark.postgres
def test_a_projector_process_is_ready_while_it_consumes_and_drains_on_sigterm(
    kafka_config: dict[str, Any], fresh_database: str, unique_prefix: str
) -> None:
    import os
    import signal
    import subprocess
    import sys

    topics = Topics(unique_prefix)
    ensure_topics_for(kafka_config, topics)
    port = _free_port()
    env = {**os.environ, "TASKPLANE_METRICS_PORT": str(port), "TASKPLANE_DATABASE_URL": fresh_database,
           "TASKPLANE_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"], "TASKPLANE_TOPIC_PREFIX": unique_prefix}
    process = subprocess.Popen([sys.executable, "-m", "taskplane.cli", "processor", "run", "projector"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_status(f"http://127.0.0.1:{port}/readyz", 200) == "ready\n"
        status, metrics = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "taskplane_tasks" in metrics  # the read-model gauges
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None and "Traceback" not in process.stderr.read()
