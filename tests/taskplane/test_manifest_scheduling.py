"""spec.scheduling: parsed, validated with the field's path, compiled into
SystemPlan.scheduling; a manifest without it keeps its version."""

from __future__ import annotations

import pytest

from taskplane.contract.scheduling import SchedulingPolicy, TenantShare
from taskplane.exceptions import ManifestError
from taskplane.manifest import load_manifest_text

BASE = """\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: fair}}
spec:
  agents: [{{name: a}}]
{scheduling}
"""


def load(scheduling: str) -> SchedulingPolicy | None:
    return load_manifest_text(BASE.format(scheduling=scheduling)).to_plan("v1").scheduling


def test_the_policy_compiles_with_defaults() -> None:
    policy = load("  scheduling:\n    tenants: {acme: {weight: 3, maxConcurrent: 50}, small: {}}\n"
                  "    priorityAging: 10s\n    window: 8")
    assert policy == SchedulingPolicy((TenantShare("acme", 3, 50), TenantShare("small", 1, 0)), 1, 0, 10_000, 8,
                                      60_000)
    assert policy is not None and policy.share("acme") == (3, 50) and policy.share("other") == (1, 0)


def test_no_scheduling_no_policy_and_the_same_version() -> None:
    assert load("") is None
    plain = load_manifest_text(BASE.format(scheduling=""))
    assert "scheduling" not in plain.canonical_json()
    with_it = load_manifest_text(BASE.format(scheduling="  scheduling: {window: 4}"))
    assert with_it.version() != plain.version()


@pytest.mark.parametrize(("scheduling", "problem"), [
    ("{tenants: {acme: {weight: 0}}}", "spec.scheduling.tenants.acme.weight: must be >= 1, got 0"),
    ("{tenants: {acme: {weight: 2000}}}", "spec.scheduling.tenants.acme.weight: must be <= 1000, got 2000"),
    ("{tenants: {acme: {maxConcurrent: -1}}}", "spec.scheduling.tenants.acme.maxConcurrent: must be >= 0"),
    ("{tenants: {'a b': {}}}", "spec.scheduling.tenants: 'a b' is not a tenant name"),
    ("{window: 0}", "spec.scheduling.window: must be >= 1, got 0"),
    ("{defaultMaxConcurrent: 99999999999999999999999}", "spec.scheduling.defaultMaxConcurrent: must be <= 1000000"),
    ("{priorityAging: 99999999999999999999h}", "spec.scheduling.priorityAging: bad duration '99999999999999999999h':"
                                               " longer than 876000h"),
    ("{priorityAging: soon}", "spec.scheduling.priorityAging:"),
    ("{releaseTimeout: 10ms}", "spec.scheduling.releaseTimeout: must be at least 1s"),
    ("{weights: 3}", "spec.scheduling.weights: unknown field"),
])
def test_a_bad_policy_names_its_path(scheduling: str, problem: str) -> None:
    with pytest.raises(ManifestError) as refused:
        load(f"  scheduling: {scheduling}")
    assert problem in str(refused.value)
