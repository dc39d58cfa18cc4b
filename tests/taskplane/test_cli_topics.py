"""``taskplane topics create`` never changes the partition count of run-keyed topics."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.streams.topics import Topics

pytestmark = [pytest.mark.kafka]


def test_a_partition_change_of_commands_is_refused_with_the_reason(kafka_config: dict[str, Any],
                                                                    unique_prefix: str) -> None:
    env = {"TASKPLANE_BOOTSTRAP_SERVERS": kafka_config["bootstrap.servers"], "TASKPLANE_TOPIC_PREFIX": unique_prefix}
    runner = CliRunner()
    created = runner.invoke(app, ["topics", "create", "--partitions", "2"], env=env)
    assert created.exit_code == 0, created.output
    again = runner.invoke(app, ["topics", "create", "--partitions", "2"], env=env)
    assert again.exit_code == 0 and "exists" in again.output

    grown = runner.invoke(app, ["topics", "create", "--partitions", "4"], env=env)
    assert grown.exit_code == 2
    assert grown.exception is None or isinstance(grown.exception, SystemExit)
    assert "refused" in grown.output and "hash(run_id) mod 2" in grown.output
    commands = Topics(unique_prefix).commands
    metadata = AdminClient(dict(kafka_config)).list_topics(commands, timeout=30)
    assert len(metadata.topics[commands].partitions) == 2
