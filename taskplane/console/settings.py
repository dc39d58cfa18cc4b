"""Settings of the console, from ``TASKPLANE_UI_*`` (and the stack's ``TASKPLANE_*``)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsoleSettings(BaseSettings):
    """Where the console listens and what it may do.

    Without ``token`` the console is read-only: replay and cancel are refused.
    """

    model_config = SettingsConfigDict(env_prefix="TASKPLANE_UI_", extra="ignore", populate_by_name=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    token: SecretStr | None = None
    # Set when the console is served over HTTPS (behind a proxy): cookies get Secure.
    secure_cookies: bool = False
    page_size: int = Field(default=50, ge=1, le=500)
    # Live pages poll at this interval (the issue: at most every second).
    poll_interval_ms: int = Field(default=1000, ge=250, le=1000)
    pool_size: int = Field(default=4, ge=1, le=64)
    # How long a page waits for a pooled read-model connection before showing the banner.
    database_timeout_s: float = Field(default=3.0, gt=0)
    # How long a replay or cancel waits to see the orchestrator's decision in `events`.
    outcome_timeout_s: float = Field(default=10.0, gt=0)
    # The read model's Postgres schema (tests use their own).
    read_model_schema: str = "readmodel"
    # An external trace UI: the run page links to it with {trace_id} filled in (docs/tracing.md).
    trace_url: str | None = Field(default=None, validation_alias="TASKPLANE_TRACE_URL")

    def writable(self) -> bool:
        return self.token is not None and bool(self.token.get_secret_value())
