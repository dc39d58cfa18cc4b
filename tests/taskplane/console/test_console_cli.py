"""``taskplane ui``'s user mistakes, and the command writer with Kafka away."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.console.commands import PublisherCommands
from taskplane.console.errors import CommandFailed
from taskplane.streams.topics import Topics


def test_a_bad_setting_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPLANE_UI_PORT", "eighty")
    result = CliRunner().invoke(app, ["ui"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: TASKPLANE_UI_PORT: Input should be a valid integer, unable to parse string as an integer"]


def test_a_bad_port_option_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["ui", "--port", "70000"])
    assert result.exit_code == 2
    assert "TASKPLANE_UI_PORT: Input should be less than or equal to 65535" in result.output
    assert "Traceback" not in result.output


def test_replay_with_kafka_unreachable_is_a_command_failure() -> None:
    writer = PublisherCommands({"bootstrap.servers": "127.0.0.1:9", "log_level": 0}, Topics("nowhere"), 1.0)
    with pytest.raises(CommandFailed) as raised:
        writer.replay("run-1", "parser")
    assert raised.value.status == 502 and raised.value.retryable
    writer.close()
