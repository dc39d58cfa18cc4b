"""taskplane: a Kafka event-sourced orchestration plane for multi-agent systems.

The public surface, imported lazily (``import taskplane.streams...`` stays cheap):

    from taskplane import Client, AsyncClient, agent, tool, AgentContext
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskplane.client._run_view import DeadLetter, RunInfo
    from taskplane.client.async_client import AsyncClient, AsyncRunHandle
    from taskplane.client.client import Client, RunHandle
    from taskplane.contract.errors import TaskplaneError
    from taskplane.exceptions import (
        ClientError,
        RunFailed,
        RunTimeout,
        UnknownRun,
        UnknownSystem,
        UserInputError,
    )
    from taskplane.workers.exceptions import NonRetryableError, ToolError
    from taskplane.workers.sdk import AgentContext, agent, tool

_EXPORTS = {
    "Client": "taskplane.client.client", "RunHandle": "taskplane.client.client",
    "AsyncClient": "taskplane.client.async_client", "AsyncRunHandle": "taskplane.client.async_client",
    "RunInfo": "taskplane.client._run_view", "DeadLetter": "taskplane.client._run_view",
    "TaskplaneError": "taskplane.contract.errors", "UserInputError": "taskplane.exceptions",
    "ClientError": "taskplane.exceptions", "RunFailed": "taskplane.exceptions",
    "RunTimeout": "taskplane.exceptions", "UnknownRun": "taskplane.exceptions",
    "UnknownSystem": "taskplane.exceptions",
    "agent": "taskplane.workers.sdk", "tool": "taskplane.workers.sdk", "AgentContext": "taskplane.workers.sdk",
    "ToolError": "taskplane.workers.exceptions", "NonRetryableError": "taskplane.workers.exceptions",
}
__all__ = [
    "AgentContext", "AsyncClient", "AsyncRunHandle", "Client", "ClientError", "DeadLetter", "NonRetryableError",
    "RunFailed", "RunHandle", "RunInfo", "RunTimeout", "TaskplaneError", "ToolError", "UnknownRun",
    "UnknownSystem", "UserInputError", "agent", "tool",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskplane' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
