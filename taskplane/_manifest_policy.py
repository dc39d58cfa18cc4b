"""Governance in manifests: ``spec.policy`` of an AgentSystem and ``kind: AgentPolicy``
documents (Orloj's field names), validated like every field and merged into the plan
at apply time: the smallest budget and the strictest verdict win, and an unknown or
empty list fails closed (docs/governance.md).

    spec:
      policy: {maxTokensPerRun: 50000, maxCostPerRun: "2.50", allowedModels: [gpt-4o],
               blockedTools: [shell.exec]}

    apiVersion: orloj.dev/v1
    kind: AgentPolicy
    metadata: {name: cost-guard}
    spec: {max_tokens_per_run: 20000, allowed_models: [gpt-4o], blocked_tools: [db.drop],
           apply_mode: scoped, target_systems: [document-pipeline]}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    Strict,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from taskplane.contract.governance import PolicyPlan, format_cost, parse_cost
from taskplane.contract.plan import SystemPlan

if TYPE_CHECKING:
    from taskplane.manifest import AgentSystemManifest


def _cost(value: object) -> int:
    if isinstance(value, float):
        raise PydanticCustomError("cost", "{reason}",
                                  {"reason": f"write a cost as a decimal string, e.g. \"{value}\" (floats round)"})
    try:
        micros = parse_cost(value)
    except ValueError as error:
        raise PydanticCustomError("cost", "{reason}", {"reason": str(error)}) from None
    if micros > MAX_BUDGET:
        raise PydanticCustomError("cost", "{reason}", {"reason": f"must be <= {format_cost(MAX_BUDGET)}, got {value!r}"})
    return micros


# Budgets past any real one, kept well inside the Avro longs they are stored in (an
# apply of a 25-digit budget validated, then failed to encode).
MAX_BUDGET = 10**15
Cost = Annotated[int, BeforeValidator(_cost), PlainSerializer(format_cost, return_type=str)]
Tokens = Annotated[int, Strict(), Field(ge=1, le=MAX_BUDGET)]
Names = tuple[Annotated[str, Field(min_length=1)], ...]


def _not_empty(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if values is not None and not values:
        raise PydanticCustomError("models", "{reason}",
                                  {"reason": "an empty list allows no model at all; omit the field to allow any"})
    return values


class PolicySpec(BaseModel):
    """``spec.policy`` of an AgentSystem (camelCase, like the rest of the manifest)."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    max_tokens_per_run: Tokens | None = None
    max_cost_per_run: Cost | None = None
    allowed_models: Names | None = None
    blocked_tools: Names = ()

    _models = field_validator("allowed_models")(classmethod(lambda cls, v: _not_empty(v)))

    def plan(self) -> PolicyPlan:
        return PolicyPlan(self.max_tokens_per_run, self.max_cost_per_run, self.allowed_models,
                          tuple(sorted(set(self.blocked_tools))))


class AgentPolicySpec(BaseModel):
    """``spec`` of a ``kind: AgentPolicy`` document, with Orloj's snake_case names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens_per_run: Tokens | None = None
    max_cost_per_run: Cost | None = None
    allowed_models: Names | None = None
    blocked_tools: Names = ()
    apply_mode: Literal["scoped", "global"] = "scoped"
    target_systems: Names = ()

    _models = field_validator("allowed_models")(classmethod(lambda cls, v: _not_empty(v)))

    def targets(self, system: str) -> bool:
        return self.apply_mode == "global" or system in self.target_systems

    def plan(self) -> PolicyPlan:
        return PolicyPlan(self.max_tokens_per_run, self.max_cost_per_run, self.allowed_models,
                          tuple(sorted(set(self.blocked_tools))))


class PolicyMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(min_length=1, max_length=253)]


class AgentPolicyManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    api_version: Literal["taskplane.dev/v1", "orloj.dev/v1"]
    kind: Literal["AgentPolicy"]
    metadata: PolicyMetadata
    spec: AgentPolicySpec


def merge(policies: Iterable[PolicyPlan | None]) -> PolicyPlan | None:
    """One policy from many: the smallest budget, the intersection of allowed models
    (an empty intersection allows none: fail closed), the union of blocked tools."""
    found = [p for p in policies if p is not None]
    if not found:
        return None
    tokens = [p.max_tokens for p in found if p.max_tokens is not None]
    costs = [p.max_cost_micros for p in found if p.max_cost_micros is not None]
    allowed: set[str] | None = None
    for p in found:
        if p.allowed_models is not None:
            allowed = set(p.allowed_models) if allowed is None else allowed & set(p.allowed_models)
    blocked = sorted({tool for p in found for tool in p.blocked_tools})
    return PolicyPlan(min(tokens, default=None), min(costs, default=None),
                      None if allowed is None else tuple(sorted(allowed)), tuple(blocked))


def policies_for(system: str, documents: Sequence[AgentPolicyManifest]) -> list[PolicyPlan]:
    """The plans of the ``AgentPolicy`` documents that target ``system``."""
    return [doc.spec.plan() for doc in documents if doc.spec.targets(system)]


def validate_policy(data: object) -> AgentPolicyManifest:
    """A parsed ``kind: AgentPolicy`` document, or ``ManifestError`` with every problem
    as ``path: reason`` (the AgentSystem's spelling of errors)."""
    from pydantic import ValidationError

    from taskplane.exceptions import ManifestError
    from taskplane.manifest import _problem  # one wording of errors for every kind

    try:
        return AgentPolicyManifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError([_problem(error, data) for error in exc.errors()]) from None


def with_policies(plan: SystemPlan, documents: Sequence[AgentPolicyManifest]) -> SystemPlan:
    """``plan`` with the ``AgentPolicy`` documents that target it merged in; its version
    names the merged policy too, so a plan is never two things (``contract/plans.py``)."""
    extra = policies_for(plan.name, documents)
    if not extra:
        return plan
    merged = merge([plan.policy, *extra])
    digest = hashlib.sha256(f"{plan.version}/{merged!r}".encode()).hexdigest()[:12]
    return replace(plan, version=digest, policy=merged)


def load_documents(paths: Sequence[str | Path]) -> tuple[list[AgentSystemManifest], list[AgentPolicyManifest]]:
    """The AgentSystem and AgentPolicy documents of ``paths`` (one document a file),
    each validated; ``UserInputError``/``ManifestError`` name the file and the field."""
    from taskplane._manifest_yaml import parse_yaml
    from taskplane.exceptions import ManifestError, UserInputError
    from taskplane.manifest import load_manifest_file, validate_manifest

    systems: list[AgentSystemManifest] = []
    policies: list[AgentPolicyManifest] = []
    for path in paths:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            systems.append(load_manifest_file(path))  # its errors, worded as for any manifest
            continue
        try:
            data = parse_yaml(text)
            if isinstance(data, dict) and data.get("kind") == "AgentPolicy":
                policies.append(validate_policy(data))
            else:
                systems.append(validate_manifest(data))
        except ManifestError as error:
            raise ManifestError([(f"{path}: {p.path}", p.reason) for p in error.problems]) from None
        except UserInputError:
            raise
    return systems, policies
