"""The container image for real: built with podman on a bootstrapped Debian base, the
orchestrator, breaker and a worker run as containers on the host network against the
session's broker, a system runs to completion, /readyz answers, and a worker SIGTERMed
mid-task hands its lease back (LeaseReleased, never LeaseExpired).

Skipped outside CI when podman is missing (saying so); a failure in CI."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from taskplane.contract import messages as m
from taskplane.contract.plan import SystemDefinition
from taskplane.streams.publisher import Publisher
from taskplane.streams.table import GlobalTable
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import EventLog
from tests.deploy._podman import (
    ULIMITS,
    Container,
    ensure_image,
    ensure_kafka_image,
    image_size_mb,
    podman,
    require_podman,
)

pytestmark = [pytest.mark.kafka, pytest.mark.image]
AGENTS = Path(__file__).resolve().parent / "image_agents"
SIZE_TARGET_MB = 250


@pytest.fixture(scope="module")
def image() -> str:
    require_podman()
    return ensure_image()


def test_image_size_is_reported(image: str, request: pytest.FixtureRequest) -> None:
    size = image_size_mb(image)
    request.node.user_properties.append(("image_size_mb", round(size, 1)))
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"\ntaskplane image {image}: {size:.1f} MB (target < {SIZE_TARGET_MB} MB)")
    assert size < SIZE_TARGET_MB, f"image is {size:.1f} MB, over the {SIZE_TARGET_MB} MB target"


def test_image_runs_as_non_root_with_the_wheel_installed(image: str, unique_prefix: str) -> None:
    probe = Container(image, f"{unique_prefix}-whoami", ["--version"], {})
    try:
        assert probe.wait(120) == 0, probe.logs()
        assert "taskplane" in probe.logs()
    finally:
        probe.remove()
    user = podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip()
    assert user and not user.startswith("0") and user != "root"
    listed = podman("run", "--rm", *ULIMITS, "--network", "host", "--entrypoint", "python3", image, "-c",
                    "import taskplane, os; print(taskplane.__file__); print(os.getuid())").stdout.split()
    assert listed[0].startswith("/opt/taskplane/lib/") and "site-packages" in listed[0]  # the wheel, not /src
    assert listed[1] != "0"


@pytest.fixture
def stack(image: str, kafka_config: dict[str, Any], kafka_bootstrap: str, unique_prefix: str,
          tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Topics under the test's prefix and the system applied by a container."""
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(kafka_config), topics, catalog())
    markers = tmp_path / "markers"
    markers.mkdir()
    markers.chmod(0o777)  # the containers' user (10001) writes here
    env = {"TASKPLANE_BOOTSTRAP_SERVERS": kafka_bootstrap, "TASKPLANE_TOPIC_PREFIX": unique_prefix,
           "TASKPLANE_METRICS_ADDRESS": "127.0.0.1"}
    containers: list[Container] = []

    def start(role: str, args: list[str], **extra: str) -> tuple[Container, str]:
        port = _free_port()
        container = Container(image, f"{unique_prefix}-{role}", args,
                              {**env, "TASKPLANE_METRICS_PORT": str(port), **extra},
                              {AGENTS: "/agents:ro", markers: "/markers"})
        containers.append(container)
        return container, f"http://127.0.0.1:{port}"

    apply, _ = start("apply", ["apply", "-f", "/agents/system.yaml"])
    assert apply.wait(180) == 0, apply.logs()
    log = EventLog(kafka_config, topics.events)
    try:
        yield {"start": start, "topics": topics, "log": log, "markers": markers, "kafka": kafka_config,
               "containers": containers}
    finally:
        log.close()
        for container in containers:
            container.remove()


def test_a_system_runs_to_completion_and_a_sigtermed_worker_releases_its_lease(stack: dict[str, Any]) -> None:
    start, log, markers = stack["start"], stack["log"], stack["markers"]
    orchestrator, orchestrator_url = start("orchestrator", ["processor", "run", "orchestrator"],
                                           TASKPLANE_RUNTIME_INSTANCE_ID="image-orchestrator")
    breaker, breaker_url = start("breaker", ["processor", "run", "breaker"],
                                 TASKPLANE_RUNTIME_INSTANCE_ID="image-breaker")
    worker, worker_url = start("worker", ["worker", "run", "--system", "imagetest", "--module", "/agents/tools.py"],
                               TASKPLANE_WORKER_SHUTDOWN_GRACE_S="1", TASKPLANE_WORKER_WORKER_ID="image-worker")
    everyone = [orchestrator, breaker, worker]
    for url in (orchestrator_url, breaker_url, worker_url):
        assert _wait_ready(url, everyone) == "ready\n"
        assert _get(f"{url}/healthz") == (200, "ok\n")

    plan = _plan(stack["kafka"], stack["topics"], "imagetest")
    with Publisher(stack["kafka"], stack["topics"]) as publisher:
        done = publisher.submit_run(plan, json.dumps({"markers": "/markers", "text": "hi"}), None)
        held = publisher.submit_run(plan, json.dumps({"markers": "/markers", "hold": True}), None)
    _wait(log, lambda lg: lg.events(m.RunSucceeded, done), everyone)
    assert [e.task for e in log.events(m.TaskSucceeded, done)] == ["prepare", "finish"]

    _wait_for_file(markers / f"started-{held}", everyone)  # the worker is inside finish's tool
    worker.signal("TERM")
    released = _wait(log, lambda lg: [e for e in lg.events(m.LeaseReleased, held) if e.task == "finish"], everyone)
    assert released and released[0].worker_id == "image-worker"
    assert not log.events(m.LeaseExpired, held), "the lease expired instead of being released"
    (markers / "release").write_text("go\n")  # let the stuck tool thread end, so the process exits
    assert worker.wait(120) == 0, worker.logs()
    assert "released 1 lease(s)" in worker.logs()
    assert orchestrator.running() and breaker.running()


def test_the_stand_in_kafka_image_serves_transactions(unique_prefix: str) -> None:
    """deploy/kafka: the local stack's jars in a container, one KRaft node, on free ports."""
    from confluent_kafka import Consumer, Producer

    require_podman()
    port, controller = _free_port(), _free_port()
    kafka = Container(ensure_kafka_image(), f"{unique_prefix}-kafka", [],
                      {"KAFKA_PORT": str(port), "KAFKA_CONTROLLER_PORT": str(controller),
                       "KAFKA_LISTEN_HOST": "127.0.0.1", "KAFKA_ADVERTISED_HOST": "127.0.0.1"})
    try:
        config = {"bootstrap.servers": f"127.0.0.1:{port}"}
        deadline = time.monotonic() + 180
        while not _broker_answers(config):
            _alive([kafka])
            assert time.monotonic() < deadline, kafka.logs()[-3000:]
        topics = Topics("standin")
        ensure_topics(AdminClient(config), topics, catalog())
        producer = Producer({**config, "transactional.id": "standin-test"})
        producer.init_transactions(60)
        producer.begin_transaction()
        producer.produce(topics.commands, b"value", b"key")
        producer.commit_transaction(60)
        del producer  # gone before its broker, or librdkafka logs reconnects after the test
        consumer = Consumer({**config, "group.id": "standin-test", "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest"})
        consumer.subscribe([topics.commands])
        record = None
        while record is None or record.error() is not None:
            _alive([kafka])
            assert time.monotonic() < deadline, "the committed record never arrived"
            record = consumer.poll(1)
        consumer.close()
        assert record.value() == b"value"
    finally:
        kafka.remove()


def _broker_answers(config: dict[str, Any]) -> bool:
    from confluent_kafka import KafkaException

    try:
        return bool(AdminClient({**config, "log_level": 0}).list_topics(timeout=5).brokers)
    except KafkaException:
        return False


def _plan(kafka: dict[str, Any], topics: Topics, system: str) -> Any:
    with GlobalTable(kafka, topics.systems) as systems:
        systems.wait_until_caught_up()
        definition = systems.get(system)
    assert isinstance(definition, SystemDefinition)
    return definition.plan


def _alive(containers: list[Container]) -> None:
    for container in containers:
        if not container.running():
            raise AssertionError(f"container {container.name} exited:\n{container.logs()[-3000:]}")


def _wait(log: EventLog, condition: Any, containers: list[Container], timeout_s: float = 120) -> Any:
    return log.wait_for(condition, timeout_s, also=lambda: _alive(containers))


def _wait_for_file(path: Path, containers: list[Container], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        _alive(containers)
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.1)


def _wait_ready(url: str, containers: list[Container], timeout_s: float = 180) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        status, body = _get(f"{url}/readyz")
        if status == 200:
            return body
        _alive(containers)
        assert time.monotonic() < deadline, f"{url}/readyz still {status}: {body}"
        time.sleep(0.2)


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, ConnectionError) as error:
        return 0, str(error)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
