"""Worker configuration (env prefix ``TASKPLANE_WORKER_``), passed to ``Worker``."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPLANE_WORKER_", extra="ignore")

    worker_id: str = Field(default_factory=_default_worker_id)
    concurrency: int = Field(default=100, ge=1)
    # Offer free slots with each CompleteTask, so the orchestrator grants the downstream
    # tasks it readies straight to this worker (no claim round trip). Off: every task
    # goes through `work` and a claim, as before (kept to measure the difference).
    follow_on_grants: bool = True
    # With follow-on grants: start the downstream tasks a completion readies at once,
    # when their grant to this worker is already decided by it (workers/speculation.py).
    # Off: wait for the grant (one orchestrator transaction per DAG level).
    speculate: bool = True
    # Claims of `work` items waiting for their answer at once (0: the concurrency). They
    # hold no slot meanwhile, so a granted claim may take the running count past the
    # concurrency by at most this many.
    claims_in_flight: int = Field(default=0, ge=0)
    # How long to wait for the orchestrator's answer to a claim before asking again.
    claim_timeout_s: float = 10.0
    claim_attempts: int = 3
    # On SIGTERM: how long running attempts may take to reach a tool call or finish.
    shutdown_grace_s: float = 10.0
    # Limits of isolated tools (process, container): address space and CPU seconds.
    # CPU defaults to the tool's timeout rounded up plus one second.
    tool_memory_mb: int = 1024
    tool_cpu_seconds: int | None = None
    # wasm tools: instructions (fuel) and linear memory.
    wasm_fuel: int = 2_000_000_000
    wasm_memory_mb: int = 64
    # Pause between in-attempt retries of one tool call (doubled each retry).
    tool_retry_backoff_ms: int = 100
    allow_isolation_fallback: bool = False
    # The attempt's invoke_agent span is the agent code's current OpenTelemetry context,
    # agent spans go over OTLP (OTEL_* variables); needs taskplane[traces] (docs/tracing.md).
    tracing: bool = False
    # How long to wait at start for the system's definition on the `systems` topic.
    definition_timeout_s: float = 30.0
    # KIP-848 consumer groups: the broker reassigns a dead worker's `work` partitions after
    # its group.consumer.session.timeout.ms (set by the cluster, see docs/failover.md) and a
    # stopping worker's at once. "classic" only for brokers older than Kafka 4.
    group_protocol: Literal["consumer", "classic"] = "consumer"
