"""taskplane: a Kafka event-sourced orchestration plane for multi-agent systems.

The public surface, imported lazily (``import taskplane.streams...`` stays cheap):

    from taskplane import Client, AsyncClient, agent, tool, AgentContext
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskplane._run_view import DeadLetter, RunInfo
    from taskplane.async_client import AsyncClient, AsyncRunHandle
    from taskplane.client import Client, RunHandle
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
    "Client": "taskplane.client", "RunHandle": "taskplane.client",
    "AsyncClient": "taskplane.async_client", "AsyncRunHandle": "taskplane.async_client",
    "RunInfo": "taskplane._run_view", "DeadLetter": "taskplane._run_view",
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
