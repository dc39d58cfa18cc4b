"""The pytest plugin (entry point ``pytest11``; or ``pytest_plugins =
["taskplane.testing.pytest_plugin"]`` in a conftest):

- ``taskplane_sim``: ``taskplane_sim(manifest, module, inputs, **options)`` runs
  ``taskplane.testing.simulate`` and returns its ``Report``; ``taskplane_sim.holds(...)``
  fails the test with the report (seed, shrunk case, trace, reproducing command).
- ``taskplane_stack`` (session): a real Kafka broker. ``TASKPLANE_BOOTSTRAP_SERVERS`` when
  set; else a container from ``TASKPLANE_TEST_KAFKA_IMAGE`` (a locally built
  ``deploy/kafka`` image) through testcontainers when it is installed and a container
  engine answers; else the dev stack's local Kafka (Java, jars cached), in a temp dir.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


class Simulator:
    """What ``taskplane_sim`` gives a test."""

    def __call__(self, manifest: str | Path, module: str, inputs: str | Path | None = None, **options: Any) -> Any:
        from taskplane.testing import simulate

        return simulate(manifest, module, inputs, **options)

    def holds(self, manifest: str | Path, module: str, inputs: str | Path | None = None, **options: Any) -> Any:
        """``simulate``, failing the test with the printed report when an invariant breaks."""
        from taskplane.testing.simulation.report import as_text

        report = self(manifest, module, inputs, **options)
        if not report.ok:
            pytest.fail(as_text(report), pytrace=False)
        return report


@dataclass(frozen=True)
class Stack:
    """A running broker: ``bootstrap_servers`` and the client config taskplane uses."""

    bootstrap_servers: str
    kafka_config: dict[str, Any]
    how: str  # "external", "testcontainers" or "local"


@pytest.fixture
def taskplane_sim() -> Simulator:
    return Simulator()


@pytest.fixture(scope="session")
def taskplane_stack() -> Iterator[Stack]:
    from taskplane.streams.settings import StackSettings

    settings = StackSettings()
    if settings.bootstrap_servers:
        yield Stack(settings.bootstrap_servers, settings.kafka_config(settings.bootstrap_servers), "external")
        return
    image = os.environ.get("TASKPLANE_TEST_KAFKA_IMAGE")
    if image and _container_engine():
        yield from _testcontainers(settings, image)
        return
    from taskplane.devstack.kafka import LocalKafka, LocalStackError

    data = Path(tempfile.mkdtemp(prefix="taskplane-stack-"))
    kafka = LocalKafka(data / "kafka", version=settings.local_kafka_version, cache_dir=settings.cache_dir)
    try:
        kafka.start()
    except LocalStackError as error:
        shutil.rmtree(data, ignore_errors=True)
        pytest.fail(f"taskplane_stack: no broker ({error}); set TASKPLANE_BOOTSTRAP_SERVERS", pytrace=False)
    try:
        yield Stack(kafka.bootstrap_servers, settings.kafka_config(kafka.bootstrap_servers), "local")
    finally:
        kafka.stop()
        shutil.rmtree(data, ignore_errors=True)


def _container_engine() -> bool:
    """A Docker-API socket (Docker's, or podman's) testcontainers can talk to."""
    if os.environ.get("DOCKER_HOST"):
        return True
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    return any(Path(p).exists() for p in ("/var/run/docker.sock", f"{runtime}/podman/podman.sock"))


def _testcontainers(settings: Any, image: str) -> Iterator[Stack]:
    try:
        from testcontainers.kafka import KafkaContainer  # type: ignore[import-not-found]
    except ImportError:
        pytest.fail("taskplane_stack: TASKPLANE_TEST_KAFKA_IMAGE is set but testcontainers is not installed",
                    pytrace=False)
    with KafkaContainer(image).with_kraft() as container:
        bootstrap = container.get_bootstrap_server()
        yield Stack(bootstrap, settings.kafka_config(bootstrap), "testcontainers")
