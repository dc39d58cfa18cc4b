"""What each role's container reads: its settings classes (env var names, required
fields) and the endpoints it must be given; shared by the k8s and compose checks."""

from __future__ import annotations

from typing import Any

from pydantic_settings import BaseSettings

from taskplane.metrics import MetricsSettings
from taskplane.processors.orchestrator.app import OrchestratorSettings
from taskplane.processors.projector.app import ProjectorSettings
from taskplane.processors.tracer.app import TracerSettings
from taskplane.streams.runtime_settings import RuntimeSettings
from taskplane.streams.settings import StackSettings
from taskplane.workers.settings import WorkerSettings

# The settings classes a container reads, by role (what `taskplane <args>` constructs).
COMMON: tuple[type[BaseSettings], ...] = (StackSettings, MetricsSettings)
ROLE_SETTINGS: dict[str, tuple[type[BaseSettings], ...]] = {
    "orchestrator": (*COMMON, RuntimeSettings, OrchestratorSettings),
    "breaker": (*COMMON, RuntimeSettings),
    "cron": (*COMMON, RuntimeSettings),
    "dispatcher": (*COMMON, RuntimeSettings),
    "projector": (*COMMON, ProjectorSettings),
    "tracer": (*COMMON, TracerSettings),
    "worker": (*COMMON, WorkerSettings),
    "apply": COMMON,
}
# Endpoints a pod must be given: without them the CLI looks for a dev stack, absent in a pod.
ROLE_ENDPOINTS = {"projector": ("TASKPLANE_BOOTSTRAP_SERVERS", "TASKPLANE_DATABASE_URL")}
ALL_SETTINGS = {cls for classes in ROLE_SETTINGS.values() for cls in classes}


def env_names(cls: type[BaseSettings]) -> dict[str, bool]:
    """Env var name -> required, for every field of a settings class."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: dict[str, bool] = {}
    for name, field in cls.model_fields.items():
        aliases = getattr(field.validation_alias, "choices", None) or [field.validation_alias]
        found = [a for a in aliases if isinstance(a, str) and a.isupper()]  # an env name of its own
        for env in found or [f"{prefix}{name}".upper()]:
            names[env] = field.is_required()
    return names


def role_of(container: dict[str, Any]) -> str:
    args = container.get("args") or container.get("command") or []
    if args[:2] == ["processor", "run"]:
        return str(args[2])
    return str(args[0])




def unknown_env(env: dict[str, Any]) -> list[str]:
    """TASKPLANE_* names no settings class reads (librdkafka pass-through excepted)."""
    from taskplane.streams.settings import KAFKA_OPTION_PREFIX

    known = {name for cls in ALL_SETTINGS for name in env_names(cls)}
    return sorted(name for name in env if name.startswith("TASKPLANE_") and name not in known
                  and not name.startswith(KAFKA_OPTION_PREFIX))


def missing_required(role: str, env: dict[str, Any], also: tuple[str, ...] = ()) -> list[str]:
    """Required fields of the role's settings, and the endpoints it needs, that ``env`` lacks."""
    required = {name for cls in ROLE_SETTINGS[role] for name, needed in env_names(cls).items() if needed}
    required |= set(ROLE_ENDPOINTS.get(role, ("TASKPLANE_BOOTSTRAP_SERVERS",))) | set(also)
    return sorted(required - set(env))


def parse_literals(role: str, env: dict[str, Any]) -> None:
    """Construct the role's settings from the literal values: a bad value raises."""
    for cls in ROLE_SETTINGS[role]:
        prefix = str(cls.model_config.get("env_prefix", ""))
        fields = {key[len(prefix):].lower(): value for key, value in env.items()
                  if key.startswith(prefix) and isinstance(value, str)
                  and key[len(prefix):].lower() in cls.model_fields}
        cls(**fields)
