"""Orloj-style ``kind: ToolPermission`` documents: a verdict per operation class, applied
with ``taskplane apply`` beside the systems they target and compiled into their plans.

    apiVersion: orloj.dev/v1
    kind: ToolPermission
    metadata: {name: payments-guard}
    spec:
      operation_rules:
        - {operation_class: read, verdict: allow}
        - {operation_class: write, verdict: approval_required}
        - {operation_class: delete, verdict: deny}
      apply_mode: scoped            # or global
      target_systems: [payment-processor]

Each tool of a targeted system gets the verdict of its ``operation`` (the manifest's
``tools[].operation``); with several documents the strictest wins (deny, then
approval_required, then allow); a tool whose class no rule of a document names (or that
declares none) is denied by it: fail closed. ``approval_required`` sets the tool's
approval (its TTL stays the manifest's), ``deny`` blocks it (``tool_blocked``, before it
runs). docs/governance.md, "Approvals".
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from taskplane._manifest_approvals import Operation
from taskplane.contract.governance import PolicyPlan
from taskplane.contract.plan import SystemPlan, ToolPlan

Verdict = Literal["allow", "approval_required", "deny"]
STRICTNESS: dict[str, int] = {"allow": 0, "approval_required": 1, "deny": 2}


class OperationRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_class: Operation
    verdict: Verdict


class ToolPermissionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    operation_rules: Annotated[tuple[OperationRule, ...], Field(min_length=1)]
    apply_mode: Literal["scoped", "global"] = "scoped"
    target_systems: tuple[Annotated[str, Field(min_length=1)], ...] = ()

    def targets(self, system: str) -> bool:
        return self.apply_mode == "global" or system in self.target_systems

    def verdict(self, operation: str) -> str:
        """This document's verdict on a tool of ``operation`` ("" unknown): deny unless a rule names it."""
        found = [rule.verdict for rule in self.operation_rules if rule.operation_class.value == operation]
        return max(found, key=STRICTNESS.__getitem__, default="deny")


class PermissionMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Annotated[str, Field(min_length=1, max_length=253)]


class ToolPermissionManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    api_version: Literal["taskplane.dev/v1", "orloj.dev/v1"]
    kind: Literal["ToolPermission"]
    metadata: PermissionMetadata
    spec: ToolPermissionSpec


def verdict(tool: ToolPlan, system: str, documents: Sequence[ToolPermissionManifest]) -> str | None:
    """The strictest verdict of the documents targeting ``system`` on ``tool`` (None: none targets it)."""
    found = [doc.spec.verdict(tool.operation) for doc in documents if doc.spec.targets(system)]
    return max(found, key=STRICTNESS.__getitem__, default=None)


def with_permissions(plan: SystemPlan, documents: Sequence[ToolPermissionManifest]) -> SystemPlan:
    """``plan`` with the verdicts compiled in; a new version when anything changed."""
    blocked: set[str] = set()
    agents = []
    for agent in plan.agents:
        tools = []
        for tool in agent.tools:
            said = verdict(tool, plan.name, documents)
            if said == "deny":
                blocked.add(tool.name)
            elif said == "approval_required" and not tool.approval_required:
                tool = replace(tool, approval_required=True)
            tools.append(tool)
        agents.append(replace(agent, tools=tuple(tools)))
    policy = plan.policy
    if blocked:
        policy = replace(policy or PolicyPlan(), blocked_tools=tuple(sorted(blocked | set((policy or PolicyPlan())
                                                                                           .blocked_tools))))
    changed = replace(plan, agents=tuple(agents), policy=policy)
    if changed == plan:
        return plan
    digest = hashlib.sha256(f"{plan.version}/{changed!r}".encode()).hexdigest()[:12]
    return replace(changed, version=digest)


def validate_permission(data: object) -> ToolPermissionManifest:
    from pydantic import ValidationError

    from taskplane.exceptions import ManifestError
    from taskplane.manifest import _problem  # one wording of errors for every kind

    try:
        return ToolPermissionManifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError([_problem(error, data) for error in exc.errors()]) from None


def split_permissions(paths: Sequence[Path]) -> tuple[list[Path], list[ToolPermissionManifest]]:
    """The ``ToolPermission`` documents of ``paths`` (validated; errors name the file and
    field) and the other paths, left to the AgentSystem/AgentPolicy loader."""
    from taskplane._manifest_yaml import parse_yaml
    from taskplane.exceptions import ManifestError

    others: list[Path] = []
    found: list[ToolPermissionManifest] = []
    for path in paths:
        try:
            data = parse_yaml(path.read_text(encoding="utf-8"))
        except Exception:  # unreadable or not YAML: the other loader words its error
            others.append(path)
            continue
        if not (isinstance(data, dict) and data.get("kind") == "ToolPermission"):
            others.append(path)
            continue
        try:
            found.append(validate_permission(data))
        except ManifestError as error:
            raise ManifestError([(f"{path}: {p.path}", p.reason) for p in error.problems]) from None
    return others, found
