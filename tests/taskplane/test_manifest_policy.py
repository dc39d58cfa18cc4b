"""Governance in manifests (taskplane/_manifest_policy.py): ``spec.policy`` and
``kind: AgentPolicy`` validated like every field (exit 2, the field's path), compiled
into the plan, and merged at apply time: smallest budget, strictest verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from taskplane._manifest_policy import load_documents, merge, with_policies
from taskplane.cli.apply import apply
from taskplane.contract.governance import PolicyPlan
from taskplane.exceptions import ManifestError
from taskplane.manifest import load_manifest_text

SYSTEM = """\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: governed}}
spec:
  agents:
    - name: writer
      model: gpt-4o
      tools: [model.call, shell.exec]
{policy}"""
POLICY = """\
apiVersion: orloj.dev/v1
kind: AgentPolicy
metadata: {{name: guard}}
spec:
{spec}"""


def _system(policy: str = "") -> str:
    return SYSTEM.format(policy=policy)


def test_spec_policy_compiles_into_the_plan() -> None:
    manifest = load_manifest_text(_system("  policy: {maxTokensPerRun: 500, maxCostPerRun: \"2.5\", "
                                          "allowedModels: [gpt-4o], blockedTools: [shell.exec]}\n"))
    plan = manifest.to_plan(manifest.version())
    assert plan.policy == PolicyPlan(500, 2_500_000, ("gpt-4o",), ("shell.exec",))
    assert '"maxCostPerRun":"2.5"' in manifest.canonical_json()


def test_no_policy_keeps_the_version_of_manifests_applied_before_it() -> None:
    manifest = load_manifest_text(_system())
    assert "policy" not in manifest.canonical_json()
    assert manifest.to_plan("v").policy is None


@pytest.mark.parametrize(("policy", "path", "reason"), [
    ("{maxTokensPerRun: 0}", "spec.policy.maxTokensPerRun", ">= 1"),
    ("{maxTokensPerRun: ten}", "spec.policy.maxTokensPerRun", "integer"),
    ("{maxTokensPerRun: 99999999999999999999999}", "spec.policy.maxTokensPerRun", "<= 1000000000000000"),
    ("{maxCostPerRun: \"99999999999999999999999\"}", "spec.policy.maxCostPerRun", "<= 1000000000"),
    ("{maxCostPerRun: 1.5}", "spec.policy.maxCostPerRun", "decimal string"),
    ("{maxCostPerRun: \"-1\"}", "spec.policy.maxCostPerRun", "non-negative"),
    ("{maxCostPerRun: \"0.0000001\"}", "spec.policy.maxCostPerRun", "6 decimals"),
    ("{allowedModels: []}", "spec.policy.allowedModels", "omit the field"),
    ("{blockedTools: [\"\"]}", "spec.policy.blockedTools[0]", "at least 1"),
    ("{maxTokens: 5}", "spec.policy.maxTokens", "did you mean maxTokensPerRun"),
])
def test_a_bad_policy_value_names_its_field(policy: str, path: str, reason: str) -> None:
    with pytest.raises(ManifestError) as refused:
        load_manifest_text(_system(f"  policy: {policy}\n"))
    (problem,) = refused.value.problems
    assert problem.path == path and reason in problem.reason


def test_merge_takes_the_smallest_budget_and_the_strictest_verdict() -> None:
    merged = merge([PolicyPlan(500, None, ("a", "b"), ("x",)), PolicyPlan(300, 7, ("b", "c"), ("y",)), None])
    assert merged == PolicyPlan(300, 7, ("b",), ("x", "y"))
    assert merge([PolicyPlan(allowed_models=("a",)), PolicyPlan(allowed_models=("b",))]) == \
        PolicyPlan(allowed_models=())  # nothing both allow: fail closed
    assert merge([None]) is None


def test_agent_policies_merge_into_the_systems_they_target(tmp_path: Path) -> None:
    system = tmp_path / "system.yaml"
    system.write_text(_system("  policy: {maxTokensPerRun: 500}\n"))
    guard = tmp_path / "guard.yaml"
    guard.write_text(POLICY.format(spec="  max_tokens_per_run: 200\n  blocked_tools: [shell.exec]\n"
                                        "  target_systems: [governed]\n"))
    other = tmp_path / "other.yaml"
    other.write_text(POLICY.format(spec="  max_tokens_per_run: 1\n  target_systems: [someone-else]\n"))
    systems, policies = load_documents([system, guard, other])
    base = systems[0].to_plan(systems[0].version())
    plan = with_policies(base, policies)
    assert plan.policy == PolicyPlan(200, None, None, ("shell.exec",))
    assert plan.version != base.version  # a plan is never two things under one version


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)
    app.command()(apply)
    return app


@pytest.mark.parametrize(("spec", "path"), [
    ("  max_tokens_per_run: -5\n", "spec.max_tokens_per_run"),
    ("  max_cost_per_run: lots\n", "spec.max_cost_per_run"),
    ("  apply_mode: sometimes\n", "spec.apply_mode"),
    ("  maxTokensPerRun: 5\n", "spec.maxTokensPerRun"),
])
def test_apply_refuses_a_bad_agent_policy_with_exit_2_and_the_path(tmp_path: Path, spec: str, path: str) -> None:
    system = tmp_path / "system.yaml"
    system.write_text(_system())
    guard = tmp_path / "guard.yaml"
    guard.write_text(POLICY.format(spec=spec))
    result = CliRunner().invoke(_cli(), ["apply", "-f", str(system), "-f", str(guard)])
    assert result.exit_code == 2, result.output
    assert f"{guard}: {path}:" in result.output
    assert "Traceback" not in result.output


def test_apply_refuses_policies_without_a_system(tmp_path: Path) -> None:
    guard = tmp_path / "guard.yaml"
    guard.write_text(POLICY.format(spec="  max_tokens_per_run: 5\n  target_systems: [governed]\n"))
    result = CliRunner().invoke(_cli(), ["apply", "-f", str(guard)])
    assert result.exit_code == 2 and "with the systems it targets" in result.output
