"""Render kustomizations and validate what they produce: built-in kinds against the
Kubernetes schemas kubernetes-validate ships, custom resources against the CRDs
vendored under deploy/crds (Strimzi, KEDA, Prometheus Operator, Flux)."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRDS = ROOT / "deploy" / "crds"
KUSTOMIZATIONS = ("base", "overlays/dev", "overlays/prod", "flux")
KUBERNETES_VERSION = "1.33.0"  # the oldest version the manifests promise to work on


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> None:
    """Skip with the reason; in CI, fail instead."""
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing tool is a failure)", pytrace=False)
    pytest.skip(message)


def kustomize() -> str:
    for candidate in (ROOT / ".tools" / "kustomize", shutil.which("kustomize")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    unavailable("kustomize not found: `make .tools/kustomize` (needs Go) or put kustomize on PATH")
    raise AssertionError("unreachable")


@cache
def render(kustomization: str) -> tuple[dict[str, Any], ...]:
    result = subprocess.run([kustomize(), "build", str(K8S / kustomization)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kustomize build {kustomization}:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every vendored CRD version."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = {"type": "object"}  # checked by the API server, not the CRD
            schemas[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = schema
    return schemas


def _strict(schema: Any) -> Any:
    """The schema with unknown fields refused: the API server would prune them silently
    (structural schemas), so a misspelt field is caught here instead."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if "properties" in strict and "additionalProperties" not in strict \
            and not strict.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


def validate(resource: dict[str, Any]) -> list[str]:
    """Problems of one rendered resource (empty when valid)."""
    import jsonschema
    import kubernetes_validate

    where = f"{resource.get('kind')}/{resource.get('metadata', {}).get('name')}"
    key = (resource.get("apiVersion", ""), resource.get("kind", ""))
    if key in crd_schemas():
        validator = jsonschema.Draft7Validator(crd_schemas()[key])
        return [f"{where}: {'.'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
                for error in validator.iter_errors(resource)]
    try:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{where}: no schema for {key} (a CRD to vendor under deploy/crds?)"]
    except kubernetes_validate.ValidationError as error:
        path = ".".join(map(str, error.path)) or "<root>"
        return [f"{where}: {path}: {error.message}"]
    return []


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def named(docs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    return next(doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name)


def config_map_env(docs: tuple[dict[str, Any], ...], name: str) -> dict[str, str]:
    return next(doc.get("data", {}) for doc in of_kind(docs, "ConfigMap") if doc["metadata"]["name"] == name)


def taskplane_containers(docs: tuple[dict[str, Any], ...]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(workload, container) of every container running a taskplane image."""
    found = []
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec") if doc["kind"] in ("Deployment", "Job") else None
        for container in (pod or {}).get("containers", []):
            if "/taskplane" in container["image"] or container["image"].startswith("taskplane"):
                found.append((doc, container))
    return found


def container_env(docs: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, Any]:
    """Every env var a container gets: envFrom ConfigMaps, then env (value or valueFrom)."""
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        env.update(config_map_env(docs, source["configMapRef"]["name"]))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env
