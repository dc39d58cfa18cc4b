"""A console app over a hand-filled read model in a fresh database, with a recording
command writer (the real writer is exercised against the orchestrator in tests/e2e)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from taskplane.console.app import build_app
from taskplane.console.settings import ConsoleSettings
from tests.taskplane.console.console_fakes import TOKEN, RecordingCommands
from tests.taskplane.console.console_rows import create_read_model


@pytest.fixture
def read_model(fresh_database: str) -> str:
    create_read_model(fresh_database)
    return fresh_database


@pytest.fixture
def commands() -> RecordingCommands:
    return RecordingCommands()


@pytest.fixture
def console_factory(commands: RecordingCommands) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(database_url: str, token: str | None = TOKEN, **settings: Any) -> TestClient:
        app = build_app(ConsoleSettings(token=token, **{"database_timeout_s": 2.0, **settings}), database_url,
                        commands, None)
        client = TestClient(app, base_url="http://127.0.0.1")
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def console(read_model: str, console_factory: Callable[..., TestClient]) -> TestClient:
    return console_factory(read_model)
