"""Trace and span ids as functions of the log.

A run's trace id and each span's id are hashes of what names the span on the log
(run, task, attempt, lease epoch, tool call), so the tracer restarted or replayed from
any offset emits the same ids, and a worker can name its attempt's span (the parent of
the agent's own spans) without asking anyone. Pure: hashlib only.
"""

from __future__ import annotations

import hashlib


def _digest(parts: tuple[object, ...], size: int) -> int:
    material = "\x1f".join(str(part) for part in parts).encode()
    value = int.from_bytes(hashlib.sha256(material).digest()[:size], "big")
    return value or 1  # zero is the invalid id in W3C trace context


def trace_id(run_id: str) -> int:
    """The 128-bit trace id of run ``run_id``."""
    return _digest(("taskplane.trace", run_id), 16)


def span_id(*parts: object) -> int:
    """A 64-bit span id named by ``parts`` (the run id first)."""
    return _digest(("taskplane.span", *parts), 8)


def run_span_id(run_id: str) -> int:
    return span_id(run_id)


def attempt_span_id(run_id: str, task: str, attempt: int, epoch: int) -> int:
    return span_id(run_id, task, attempt, epoch)


def tool_span_id(run_id: str, task: str, epoch: int, key: str, attempt_try: int) -> int:
    """The ``execute_tool`` span of one try (1, 2, ...) of a tool call within an attempt."""
    return span_id(run_id, task, epoch, key, attempt_try)


def trace_id_hex(run_id: str) -> str:
    return f"{trace_id(run_id):032x}"


def traceparent(run_id: str, task: str, attempt: int, epoch: int) -> str:
    """The W3C ``traceparent`` header naming the attempt's span (sampled)."""
    return header(run_id, attempt_span_id(run_id, task, attempt, epoch))


def header(run_id: str, parent_span_id: int) -> str:
    return f"00-{trace_id(run_id):032x}-{parent_span_id:016x}-01"
