"""The shipped alert rules are valid Prometheus rules and cover the seeds' runbook."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool missing: apt-get install -y --no-install-recommends prometheus")
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook_section_and_the_seeds_alerts_exist() -> None:
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"TaskplaneDeadLetters", "TaskplaneTaskAgeOverSLA", "TaskplaneLeaseRenewalFailures",
            "TaskplaneRetrySpike", "TaskplaneBlockedDownstream", "TaskplaneConsumerLagGrowing"} <= names
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    for rule in rules:
        assert rule["annotations"]["runbook"].startswith("docs/runbook.md#")
        assert f"## {rule['alert']}" in runbook or rule["alert"] == "TaskplaneDeadLetterTransitions"
