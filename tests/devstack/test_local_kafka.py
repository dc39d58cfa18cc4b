"""LocalKafka's lifecycle: it starts, answers, and leaves no process behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from taskplane.devstack.kafka import LocalKafka, StartupError, pid_alive
from taskplane.streams.settings import StackSettings

pytestmark = pytest.mark.kafka


def _require_local_kafka() -> None:
    """Skip when only an external broker is usable (no Java, or no jars)."""
    from taskplane.devstack.kafka import MissingToolError, kafka_libs, require_java

    try:
        require_java()
        kafka_libs(StackSettings().local_kafka_version, StackSettings().cache_dir)
    except MissingToolError as error:
        pytest.skip(str(error))


def test_stop_leaves_no_process(tmp_path: Path, kafka_bootstrap: str) -> None:
    # kafka_bootstrap first: the jars are fetched (or the test is skipped) there.
    _require_local_kafka()
    with LocalKafka(tmp_path / "kafka") as kafka:
        pid = kafka.pid
        assert pid is not None and pid_alive(pid)
        host, port = kafka.bootstrap_servers.split(":")
        socket.create_connection((host, int(port)), timeout=5).close()
    assert not pid_alive(pid)
    kafka.stop()  # idempotent


def test_port_in_use_fails_with_the_log_and_no_orphan(tmp_path: Path, kafka_bootstrap: str) -> None:
    _require_local_kafka()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        kafka = LocalKafka(tmp_path / "kafka", port=taken.getsockname()[1], start_timeout=60)
        with pytest.raises(StartupError) as failure:
            kafka.start()
    assert "Last log lines" in str(failure.value)
    assert kafka.pid is None
