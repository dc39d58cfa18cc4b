"""``kind: ToolPermission`` (``taskplane/_manifest_permissions.py``): a verdict per
operation class compiled into the plan at apply; the strictest wins, a class no rule
names is denied (fail closed), a bad document is refused with its field's path, exit 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from taskplane._manifest_permissions import validate_permission, with_permissions
from taskplane.cli.apply import register
from taskplane.exceptions import ManifestError
from taskplane.manifest import load_manifest_text

SYSTEM = """\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: pay}
spec:
  agents:
    - name: payer
      tools:
        - ledger.read: {operation: read}
        - pay.charge: {operation: write, approval: {required: true, ttl: 30m}}
        - pay.refund: {operation: write}
        - db.drop: {operation: delete}
        - mystery.tool
"""


def _permission(rules: list[dict[str, str]], **spec: Any) -> Any:
    return validate_permission({"apiVersion": "orloj.dev/v1", "kind": "ToolPermission", "metadata": {"name": "p"},
                                "spec": {"operation_rules": rules, "target_systems": ["pay"], **spec}})


def _plan() -> Any:
    manifest = load_manifest_text(SYSTEM)
    return manifest.to_plan(manifest.version())


def test_verdicts_by_operation_class_compile_into_the_plan() -> None:
    guard = _permission([{"operation_class": "read", "verdict": "allow"},
                         {"operation_class": "write", "verdict": "approval_required"},
                         {"operation_class": "delete", "verdict": "deny"}])
    plan = with_permissions(_plan(), [guard])
    tools = {t.name: t for t in plan.agents[0].tools}
    assert not tools["ledger.read"].approval_required
    assert tools["pay.refund"].approval_required and tools["pay.refund"].approval_ttl_ms == 600_000
    assert tools["pay.charge"].approval_ttl_ms == 1_800_000  # the manifest's TTL stays
    assert plan.policy is not None and set(plan.policy.blocked_tools) == {"db.drop", "mystery.tool"}  # fail closed
    assert plan.version != _plan().version


def test_the_strictest_verdict_wins_and_untargeted_systems_are_untouched() -> None:
    lenient = _permission([{"operation_class": c, "verdict": "allow"} for c in ("read", "write", "delete", "admin")])
    strict = _permission([{"operation_class": "write", "verdict": "deny"}, {"operation_class": "read",
                                                                          "verdict": "allow"}])
    plan = with_permissions(_plan(), [lenient, strict])
    assert plan.policy is not None and {"pay.charge", "pay.refund", "db.drop"} <= set(plan.policy.blocked_tools)
    elsewhere = _permission([{"operation_class": "write", "verdict": "deny"}], target_systems=["other"])
    assert with_permissions(_plan(), [elsewhere]) == _plan()
    everywhere = _permission([{"operation_class": "write", "verdict": "deny"}], apply_mode="global",
                             target_systems=[])
    assert with_permissions(_plan(), [everywhere]) != _plan()


@pytest.mark.parametrize(("spec", "path"), [
    ({"operation_rules": [{"operation_class": "write", "verdict": "maybe"}]}, "spec.operation_rules[0].verdict"),
    ({"operation_rules": [{"operation_class": "exec", "verdict": "deny"}]},
     "spec.operation_rules[0].operation_class"),
    ({"operation_rules": []}, "spec.operation_rules"),
])
def test_a_bad_document_names_its_field_and_apply_exits_2(spec: dict[str, Any], path: str, tmp_path: Path) -> None:
    document = {"apiVersion": "orloj.dev/v1", "kind": "ToolPermission", "metadata": {"name": "p"}, "spec": spec}
    with pytest.raises(ManifestError) as refused:
        validate_permission(document)
    assert path in str(refused.value)
    import yaml

    (tmp_path / "system.yaml").write_text(SYSTEM)
    (tmp_path / "perm.yaml").write_text(yaml.safe_dump(document))
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    result = CliRunner().invoke(app, ["apply", "-f", str(tmp_path / "system.yaml"), "-f", str(tmp_path / "perm.yaml")])
    assert result.exit_code == 2 and path in result.output and "Traceback" not in result.output
