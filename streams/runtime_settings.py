"""Settings of one processor instance (``TASKPLANE_RUNTIME_*``)."""

from __future__ import annotations

import socket
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RuntimeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKPLANE_RUNTIME_", extra="ignore")

    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="Stable per instance (pod name): a restart with the same id fences its predecessor.",
    )
    group_id: str | None = Field(default=None, description="Consumer group; defaults to the processor name.")
    max_batch_records: int = Field(default=5_000, ge=1, description="Records per transaction at most.")
    max_batch_ms: int = Field(default=100, ge=1, description="How long a batch waits for records.")
    linger_ms: int = Field(default=0, ge=0, description=(
        "After a batch's first record, how long it keeps collecting before it commits (0: at once). "
        "Trades latency for fewer transactions (broker CPU) where latency matters less."))
    producer_linger_ms: int = Field(default=5, ge=0, description=(
        "linger.ms of the transactional producer: a batch's records wait this long before their "
        "produce requests unless the commit flushes them first (it usually does). 0 sends them during "
        "send_offsets, whose offset commit then queues behind them on the same connection: each "
        "transaction took longer under a flood (docs/benchmarks.md, 'per-hop')."))
    producers: int = Field(default=2, ge=1, le=8, description=(
        "Transactional producers (ids) an instance takes turns with, one transaction at a time. "
        "With 2, a transaction begun right after a commit does not wait for that commit's markers "
        "(CONCURRENT_TRANSACTIONS retries: 39 % of the orchestrator's transactions under a flood), "
        "so two commits' markers may be in flight at once; on a broker that drops markers (Kafka "
        "4.3.0-4.4.0) set 1 (docs/runtime.md, 'Two transactional ids')."))
    tick_interval_ms: int = Field(default=200, ge=10, description="How often due timers are ticked.")
    transaction_timeout_ms: int = Field(default=30_000, ge=1_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    call_timeout_ms: int = Field(
        default=5_000, ge=100,
        description="Deadline of every blocking Kafka call; a transactional call still blocked "
        "a second past it is abandoned and its producer re-created.",
    )
    tick_grace_after_failure_ms: int = Field(
        default=3_000, ge=0,
        description="No Ticks for this long after a failed transaction (a broker outage): "
        "commands the clients queued meanwhile, renewals among them, reach the log first.",
    )
    group_protocol: Literal["classic", "consumer"] = Field(
        default="consumer",
        description="Consumer group protocol. 'consumer' (KIP-848): the member keeps its id across "
        "a broker restart and gets its partitions back at once (classic rejoined as a new member and "
        "waited out the old one's session); the broker owns the session timeout (docs/failover.md). "
        "'classic' for brokers older than Kafka 4 (session_timeout_ms applies there). No static "
        "membership: librdkafka turns a broker restart into a fatal FENCED_INSTANCE_ID for those.",
    )
    fetch_wait_ms: int = Field(
        default=500, ge=1,
        description="How long the broker holds the input consumer's fetch that finds nothing "
        "(fetch.wait.max.ms): a record or commit marker answers it at once, so it costs no latency; "
        "an idle processor sends one a wait (docs/runtime.md).",
    )

    def defaulting(self, **defaults: Any) -> RuntimeSettings:
        """These settings with a processor's own defaults for the fields neither the
        environment nor the caller set (``TASKPLANE_RUNTIME_*`` still wins)."""
        unset = {name: value for name, value in defaults.items() if name not in self.model_fields_set}
        return self.model_copy(update=unset) if unset else self
