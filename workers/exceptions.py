"""The error tree of ``workers/``. Errors say whether the task may succeed on a retry;
the worker maps them onto ``FailTask`` kinds (``ERROR``, ``NON_RETRYABLE``,
``BREAKER_OPEN``)."""

from __future__ import annotations

from taskplane.contract.errors import TaskplaneError


class WorkerError(TaskplaneError):
    """Any failure of the worker runtime or of the code it runs."""

    retryable: bool = True


class RegistryError(WorkerError):
    """An agent or tool is missing, registered twice, or declared inconsistently."""

    retryable = False


class IsolationUnavailable(WorkerError):
    """An isolation mode the system needs cannot run on this machine (no bwrap, no
    wasmtime)."""

    retryable = False


class ToolError(WorkerError):
    """A tool call failed. ``retryable`` False fails the task without a retry."""

    def __init__(self, tool: str, message: str, *, retryable: bool = True) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool
        self.retryable = retryable


class ToolTimeout(ToolError):
    """The tool ran past its ``timeout`` and was stopped (or, with isolation
    ``none``, abandoned: a thread cannot be killed)."""


class ToolResourceExceeded(ToolError):
    """The tool hit its CPU, memory or fuel limit and was stopped."""


class NonRetryableError(WorkerError):
    """Raise from an agent or tool to fail the task at once (dead-letter, no retry),
    e.g. an input that will never validate."""

    retryable = False


class BreakerOpenError(WorkerError):
    """The tool's breaker is open and it has no fallback: the task fails fast without
    burning its retry budget and is retried after ``retry_after_ms``."""

    def __init__(self, tool: str, retry_after_ms: int) -> None:
        super().__init__(f"breaker open for {tool}, retry in {retry_after_ms} ms")
        self.tool = tool
        self.retry_after_ms = retry_after_ms


class WorkerStopping(WorkerError):
    """The worker is shutting down: the attempt stops at its next tool call and its
    lease is released for another worker."""
