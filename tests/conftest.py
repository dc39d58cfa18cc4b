"""Session-wide real services: one Kafka broker and one Postgres per test session.

``TASKPLANE_BOOTSTRAP_SERVERS`` / ``TASKPLANE_DATABASE_URL`` point the tests at
external servers instead. With CI=true a missing Java, Maven or Postgres fails
the tests; elsewhere those tests are skipped.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from hypothesis import settings

from taskplane.devstack.cluster import LocalKafkaCluster
from taskplane.devstack.kafka import LocalKafka, LocalStackError
from taskplane.devstack.postgres import LocalPostgres
from taskplane.streams.settings import StackSettings


class _CheckoutFolders(MetaPathFinder):
    """``bench``, ``examples``, ``scripts`` and ``tests`` import from the checkout's root,
    which pytest does not put on sys.path: the root also holds ``contract/``, ``streams/``,
    ... whose one import name is ``taskplane.contract``, ... (docs/layers.md). Those bare
    names fail here even when the root is on sys.path (``python -m pytest``): a second
    import path would give every class a second identity, and an ``except`` would miss it."""

    NAMES = ("bench", "examples", "scripts", "tests")
    BARE = ("contract", "streams", "processors", "workers", "devstack", "schemas")
    ROOT = str(Path(__file__).resolve().parent.parent)

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> ModuleSpec | None:
        if fullname in self.BARE:
            raise ModuleNotFoundError(f"import taskplane.{fullname}, not {fullname} (one import path: docs/layers.md)",
                                      name=fullname)
        return PathFinder.find_spec(fullname, [self.ROOT]) if fullname in self.NAMES else None


sys.meta_path.insert(0, _CheckoutFolders())


def _unavailable(what: str, error: Exception) -> None:
    message = f"{what} unavailable: {error}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def stack_settings() -> StackSettings:
    return StackSettings()


@pytest.fixture(scope="session")
def services_dir() -> Iterator[Path]:
    """Data dirs of the session's servers, outside pytest's basetemp rotation: a
    concurrent pytest session prunes old basetemps and must not delete a live broker's."""
    path = Path(tempfile.mkdtemp(prefix="taskplane-test-services-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_settings: StackSettings, services_dir: Path) -> Iterator[str]:
    """Bootstrap servers of the session's broker (external when the env var is set;
    ``TASKPLANE_TEST_BROKERS=3``: a 3-node KRaft cluster, replication 3, min ISR 2)."""
    if stack_settings.bootstrap_servers:
        yield stack_settings.bootstrap_servers
        return
    brokers = int(os.environ.get("TASKPLANE_TEST_BROKERS", "1"))
    kafka: LocalKafka | LocalKafkaCluster = LocalKafka(
        services_dir / "kafka",
        version=stack_settings.local_kafka_version,
        cache_dir=stack_settings.cache_dir,
    ) if brokers == 1 else LocalKafkaCluster(
        services_dir / "kafka", nodes=brokers, version=stack_settings.local_kafka_version,
        cache_dir=stack_settings.cache_dir,
    )
    try:
        kafka.start()
    except LocalStackError as error:
        _unavailable("Kafka", error)
    try:
        yield kafka.bootstrap_servers
    finally:
        gc.collect()  # Kafka clients left in reference cycles go now, while their broker still answers
        # Its data dir goes next: a controlled shutdown guards nothing, and at the end of a
        # session (thousands of partitions) it may use all of a 5 s grace (the last test's
        # teardown, which carries it, took 6.4 s), once per pytest worker.
        for node in kafka.nodes.values() if isinstance(kafka, LocalKafkaCluster) else [kafka]:
            node.kill()


@pytest.fixture(scope="session")
def kafka_config(stack_settings: StackSettings, kafka_bootstrap: str) -> dict[str, object]:
    """Base confluent-kafka config for the session's broker (copy before changing)."""
    return stack_settings.kafka_config(kafka_bootstrap)


@pytest.fixture(scope="session")
def database_url(stack_settings: StackSettings, services_dir: Path) -> Iterator[str]:
    """URL of the session's Postgres (external when TASKPLANE_DATABASE_URL is set)."""
    external = stack_settings.database_dsn()
    if external:
        yield external
        return
    postgres = LocalPostgres(services_dir / "postgres")
    try:
        postgres.start()
    except LocalStackError as error:
        _unavailable("Postgres", error)
    try:
        yield postgres.url
    finally:
        postgres.stop()


@pytest.fixture
def unique_prefix(request: pytest.FixtureRequest) -> str:
    """A name unique to this test, safe for topics, groups and transactional ids."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", request.node.name).strip("-").lower()[:40]
    return f"t-{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic_factory(kafka_config: dict[str, object], unique_prefix: str) -> Callable[..., str]:
    """``topic_factory("events", partitions=3, config={...}) -> full topic name``."""
    admin = AdminClient(dict(kafka_config))

    def create(
        name: str = "topic", partitions: int = 1, config: dict[str, str] | None = None
    ) -> str:
        topic = f"{unique_prefix}.{name}"
        new = NewTopic(topic, num_partitions=partitions, replication_factor=-1, config=config or {})
        admin.create_topics([new])[topic].result(30)
        return topic

    return create


@pytest.fixture
def fresh_database(database_url: str, unique_prefix: str) -> Iterator[str]:
    """URL of a new, empty database, dropped after the test."""
    name = unique_prefix.replace("-", "_")[:63]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(database_url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ``make check`` runs every property on a fifth of its examples (at least 5); ``make test``
# runs them all. The properties are the same, so the fast lane can still fail on them.
QUICK_PROPERTIES = os.environ.get("TASKPLANE_QUICK_PROPERTIES") == "1"


def _fewer_examples(item: pytest.Item, done: set[int]) -> None:
    test = getattr(item, "obj", None)
    for holder, name in ((getattr(test, "__func__", test), "_hypothesis_internal_use_settings"),  # a method's function
                         (getattr(item, "cls", None), "settings")):  # @given, then a state machine's TestCase
        current = getattr(holder, name, None)
        if isinstance(current, settings) and id(holder) not in done:
            done.add(id(holder))  # parametrized items share one function: scale it once
            fewer = {"max_examples": max(5, current.max_examples // 5)}
            if name == "settings":
                fewer["stateful_step_count"] = max(10, current.stateful_step_count // 2)
            setattr(holder, name, settings(current, **fewer))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reaches the session's broker or Postgres through any fixture carries
    the marker, so ``make check`` (``-m "not kafka and not postgres ..."``) never starts
    one even where a module forgot its ``pytestmark``."""
    done: set[int] = set()
    for item in items:
        if QUICK_PROPERTIES:
            _fewer_examples(item, done)
        needs = set(getattr(item, "fixturenames", ()))
        if "kafka_bootstrap" in needs and item.get_closest_marker("kafka") is None:
            item.add_marker(pytest.mark.kafka)
        if "database_url" in needs and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)
