"""Connection settings shared by every component that talks to Kafka or Postgres.

Read from the environment with the ``TASKPLANE_`` prefix. Secrets stay in
``SecretStr`` so a ``repr`` or a log line never shows them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KAFKA_OPTION_PREFIX = "TASKPLANE_KAFKA_"
# Set: librdkafka's own log lines go to stderr (streams/kafka_clients.py). A value other
# than a yes (1, true, yes, on) is also librdkafka's ``debug`` option (its contexts).
KAFKA_DEBUG_ENV = "TASKPLANE_KAFKA_DEBUG"
_YES = frozenset({"1", "true", "yes", "on"})
# 4.2.2, not 4.3.x/4.4.0: from 4.3.0 the transaction coordinator drops a commit's markers on
# every partition whose leader is offline (KAFKA-20734), which a restarted single node always
# meets (docs/failover.md, "Dropped commit markers"); 4.2.2 keeps them until a leader returns.
DEFAULT_KAFKA_VERSION = "4.2.2"
# The newest release with that regression, for the tests that reproduce it (the sweep).
MARKER_DROPPING_KAFKA_VERSION = "4.3.1"


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taskplane"


def kafka_options_from_env(environ: dict[str, str] | None = None) -> dict[str, SecretStr]:
    """librdkafka options from ``TASKPLANE_KAFKA_*``.

    ``TASKPLANE_KAFKA_SASL_MECHANISM=PLAIN`` becomes ``sasl.mechanism=PLAIN``.
    """
    env = os.environ if environ is None else environ
    options: dict[str, SecretStr] = {}
    for name, value in env.items():
        if not name.startswith(KAFKA_OPTION_PREFIX) or name == "TASKPLANE_KAFKA_OPTIONS":
            continue
        if name == KAFKA_DEBUG_ENV and value.strip().lower() in _YES:
            continue  # only "show librdkafka's lines", not a librdkafka option
        key = name[len(KAFKA_OPTION_PREFIX) :].lower().replace("_", ".")
        options[key] = SecretStr(value)
    return options


def with_reconnect_backoff(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with a short reconnect backoff unless it sets one: librdkafka's default
    (up to 10 s between attempts) alone would break "resume within 5 s of the broker's
    return". Explicit settings win."""
    return {"reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1_000, **config}


class StackSettings(BaseSettings):
    """Where Kafka and Postgres are, and where local tooling keeps its files."""

    model_config = SettingsConfigDict(env_prefix="TASKPLANE_", extra="ignore")

    bootstrap_servers: str | None = None
    database_url: SecretStr | None = None
    topic_prefix: str = "taskplane"
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    local_kafka_version: str = DEFAULT_KAFKA_VERSION
    # SASL/SSL and other client options; filled from TASKPLANE_KAFKA_* when not given.
    kafka_options: dict[str, SecretStr] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect_kafka_options(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("kafka_options"):
            data = {**data, "kafka_options": kafka_options_from_env()}
        return data

    def kafka_config(
        self, bootstrap_servers: str | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """A confluent-kafka config dict: bootstrap servers (the argument, else the
        setting), then the TASKPLANE_KAFKA_* pass-through options, then ``extra``."""
        servers = bootstrap_servers or self.bootstrap_servers
        if not servers:
            raise ValueError(
                "no Kafka bootstrap servers: set TASKPLANE_BOOTSTRAP_SERVERS or run `taskplane dev up`"
            )
        config: dict[str, Any] = {"bootstrap.servers": servers}
        config.update({key: value.get_secret_value() for key, value in self.kafka_options.items()})
        config.update(extra or {})
        return config

    def database_dsn(self) -> str | None:
        return self.database_url.get_secret_value() if self.database_url else None
