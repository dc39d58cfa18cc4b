"""A secured cluster (SASL/SCRAM-SHA-512 over TLS, ACLs per role, devstack/secure.py):
a worker's credentials submit commands, but cannot write ``events`` nor read another
installation's topics; each refusal is a NotAuthorized naming the topic and the
principal, and nothing is written."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskplane.contract.messages import CancelRun
from taskplane.devstack.cluster import LocalKafkaCluster
from taskplane.devstack.secure import (
    SecureFiles,
    client_config,
    create_principals,
    secure_files,
    secured,
)
from taskplane.streams import kafka_clients
from taskplane.streams.exceptions import NotAuthorized
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.publisher import Publisher
from taskplane.streams.settings import StackSettings, kafka_options_from_env
from taskplane.streams.topics import Topics, catalog, ensure_topics

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def secure_cluster() -> Iterator[tuple[LocalKafkaCluster, SecureFiles]]:
    data_dir = Path(tempfile.mkdtemp(prefix="taskplane-test-secure-"))
    files = secure_files(data_dir / "secure")
    settings = StackSettings()
    with LocalKafkaCluster(data_dir / "kafka", nodes=1, version=settings.local_kafka_version,
                           cache_dir=settings.cache_dir, customize=secured(files), start_timeout=300) as cluster:
        yield cluster, files
    shutil.rmtree(data_dir, ignore_errors=True)


def as_user(cluster: LocalKafkaCluster, files: SecureFiles, user: str) -> dict[str, Any]:
    """A component's config the way it gets it in production: TASKPLANE_KAFKA_* variables."""
    env = {f"TASKPLANE_KAFKA_{k.upper().replace('.', '_')}": v for k, v in client_config(files, user).items()}
    options = {key: value.get_secret_value() for key, value in kafka_options_from_env(env).items()}
    return {"bootstrap.servers": cluster.bootstrap_servers, "log_level": 0, **options}


def test_a_worker_cannot_write_events_nor_read_another_installations_topics(
        secure_cluster: tuple[LocalKafkaCluster, SecureFiles], unique_prefix: str) -> None:
    cluster, files = secure_cluster
    admin = as_user(cluster, files, "admin")
    ours, theirs = Topics(unique_prefix), Topics(f"{unique_prefix}-other")
    for topics in (ours, theirs):  # theirs: another installation, with principals of its own
        ensure_topics(kafka_clients.admin(admin), topics, catalog(2, 1))
    create_principals(admin, files, ours)
    with Publisher(admin, theirs) as publisher:
        publisher.publish(CancelRun("run-0", "their record"))
    worker = as_user(cluster, files, "worker")

    # Allowed: a worker asks the orchestrator through commands.
    with Publisher(worker, ours) as publisher:
        publisher.publish(CancelRun("run-1", "a worker may ask"))
    assert len(list(read_to_end(admin, ours.commands))) == 1

    # Refused: a record on events written with the worker's credentials (the publisher's
    # produce path aimed at events: what a compromised worker process could try).
    with pytest.raises(NotAuthorized) as refused, Publisher(worker, ours) as publisher:
        publisher._produce(ours.events, "run-1", CancelRun("run-1", "forged"), None)
    message = str(refused.value)
    assert ours.events in message and "User:worker" in message, message
    assert refused.value.retryable is False
    assert list(read_to_end(admin, ours.events)) == [], "something reached events"

    # Refused: another installation's topics, read with this one's worker credentials.
    with pytest.raises(NotAuthorized) as foreign:
        list(read_to_end(worker, theirs.commands))
    assert theirs.commands in str(foreign.value) and "User:worker" in str(foreign.value)
    # ... and its commands are not writable either.
    with pytest.raises(NotAuthorized), Publisher(worker, theirs) as publisher:
        publisher.publish(CancelRun("run-2", "not mine"))
    assert len(list(read_to_end(admin, theirs.commands))) == 1, "a worker wrote another installation's commands"
