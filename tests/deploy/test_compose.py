"""deploy/compose.yaml says what the code says: every taskplane service runs a known
role with settings that exist and the endpoints it needs; images build from files here."""

from __future__ import annotations

from typing import Any

import yaml

from tests.deploy._k8s import ROOT
from tests.deploy._settings import (
    ROLE_SETTINGS,
    missing_required,
    parse_literals,
    role_of,
    unknown_env,
)

COMPOSE = ROOT / "deploy" / "compose.yaml"
ONE_SHOT = {"topics"}  # `taskplane topics create`: Stack settings only


def services() -> dict[str, dict[str, Any]]:
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def test_every_taskplane_service_runs_a_role_with_known_settings() -> None:
    roles = set()
    for name, service in services().items():
        if "taskplane:" not in service.get("image", ""):
            continue
        env = {key: str(value) for key, value in service.get("environment", {}).items()}
        assert not unknown_env(env), f"{name}: env vars no settings class reads: {unknown_env(env)}"
        if name in ONE_SHOT:
            assert service["command"][:2] == ["topics", "create"]
            continue
        role = role_of(service)
        roles.add(role)
        assert not missing_required(role, env), f"{name}: required settings not set"
        parse_literals(role, env)
    assert roles == set(ROLE_SETTINGS)


def test_builds_point_at_files_that_exist() -> None:
    for name, service in services().items():
        build = service.get("build")
        if build is None:
            continue
        context = COMPOSE.parent / (build if isinstance(build, str) else build["context"])
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile} missing"
