"""Every manifest field reaches the component it configures, or validation refuses the
values nothing would honour (issue 12, item 6: the operator's policy wins)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from taskplane.exceptions import ManifestError
from taskplane.manifest import (
    AgentSpec,
    AgentSystemManifest,
    BreakersSpec,
    ExecutionSpec,
    ObservabilitySpec,
    PersistenceSpec,
    ToolSpec,
    load_manifest_text,
)

# Where each field goes. A new field fails test_every_field_is_accounted_for until it is
# placed here, and its destination tested.
REACHES: dict[type[BaseModel], dict[str, str]] = {
    ToolSpec: {
        "name": "ToolPlan.name", "timeout": "ToolPlan.timeout_ms", "retries": "ToolPlan.retries",
        "isolation": "ToolPlan.isolation", "fallback": "ToolPlan.fallback",
        "failure_threshold": "ToolPlan.failure_threshold", "cooldown": "ToolPlan.cooldown_ms",
        "network": "ToolPlan.network (the worker's container sandbox)",
        "approval": "ToolPlan.approval_required / approval_ttl_ms (test_manifest_approvals.py)",
        "operation": "ToolPlan.operation (test_manifest_approvals.py)",
        "rate_limit": "ToolPlan.rate_limit/rate_period_ms (the tool governor)",
        "concurrency": "ToolPlan.concurrency (the tool governor)",
    },
    AgentSpec: {"name": "AgentPlan.name", "model": "AgentPlan.model", "tools": "AgentPlan.tools",
                "dependencies": "AgentPlan.dependencies"},
    ExecutionSpec: {
        "lease_timeout": "ExecutionPolicy.lease_timeout_ms", "max_retries": "ExecutionPolicy.max_retries",
        "initial_backoff": "ExecutionPolicy.initial_backoff_ms",
        "backoff_multiplier": "ExecutionPolicy.backoff_multiplier",
        "max_backoff_cap": "ExecutionPolicy.max_backoff_ms", "jitter_fraction": "ExecutionPolicy.jitter_fraction",
        "dead_letter_transition": "ExecutionPolicy.dead_letter_transition",
        "idempotency_tracking": "ExecutionPolicy.idempotency_tracking",
        "state_persistence": "refused unless true",
        "finished_run_retention": "ExecutionPolicy.finished_run_retention_ms",
    },
    BreakersSpec: {"failure_threshold": "ToolPlan.failure_threshold default",
                   "cooldown": "ToolPlan.cooldown_ms default"},
    ObservabilitySpec: {"metrics_export": "refused unless prometheus", "lease_renewal_metrics": "refused unless true",
                        "task_state_change_metrics": "refused unless true",
                        "dead_letter_alerts": "refused unless true"},
    PersistenceSpec: {"backend": "postgresql only",
                      "connection_string": "accepted for the seeds' YAML; the read model uses TASKPLANE_DATABASE_URL",
                      "backup_schedule": "accepted for the seeds' YAML; backups are the database's"},
}

BASE = """\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: reach}}
spec:
  agents:
    - name: a
      tools:
        - web.search: {{isolation: container, network: {network}}}
{extra}"""


def test_every_field_is_accounted_for() -> None:
    for model, reaches in REACHES.items():
        assert set(model.model_fields) == set(reaches), model.__name__
    assert set(AgentSystemManifest.model_fields) == {"api_version", "kind", "metadata", "spec"}


@pytest.mark.parametrize("network", [True, False])
def test_network_reaches_the_tool_plan(network: bool) -> None:
    manifest = load_manifest_text(BASE.format(network=str(network).lower(), extra=""))
    (tool,) = manifest.to_plan("v").agents[0].tools
    assert tool.network is network


@pytest.mark.parametrize(
    ("extra", "path", "reason"),
    [
        ("  execution: {statePersistence: false}\n", "spec.execution.statePersistence", "always persisted"),
        ("  observability: {metricsExport: none}\n", "spec.observability.metricsExport", "prometheus"),
        ("  observability: {deadLetterAlerts: false}\n", "spec.observability.deadLetterAlerts", "per deployment"),
        ("  observability: {leaseRenewalMetrics: false}\n", "spec.observability.leaseRenewalMetrics",
         "per deployment"),
    ],
)
def test_values_nothing_would_honour_are_refused(extra: str, path: str, reason: str) -> None:
    with pytest.raises(ManifestError) as caught:
        load_manifest_text(BASE.format(network="true", extra=extra))
    assert any(problem.path == path and reason in problem.reason for problem in caught.value.problems), \
        caught.value.lines()
