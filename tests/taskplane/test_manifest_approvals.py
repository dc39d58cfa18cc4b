"""Per-tool ``approval`` and ``operation`` (``taskplane/_manifest_approvals.py``): both
forms compile into the tool's plan; a bad value is refused with the field's path and
exit 2; tools without them keep the system's version."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from taskplane.cli.systems import register
from taskplane.exceptions import ManifestError
from taskplane.manifest import load_manifest_text, manifest_version

MANIFEST = """\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: pay}
spec:
  agents:
    - name: payer
      tools:
        - payments.charge: {approval: required, operation: write}
        - email.send: {approval: {required: true, ttl: 30m}, operation: delete}
        - web.search
"""


def test_both_forms_compile_into_the_tool_plan() -> None:
    manifest = load_manifest_text(MANIFEST)
    tools = {t.name: t for t in manifest.to_plan(manifest.version()).agents[0].tools}
    assert (tools["payments.charge"].approval_required, tools["payments.charge"].approval_ttl_ms) == (True, 600_000)
    assert tools["payments.charge"].operation == "write"
    assert (tools["email.send"].approval_required, tools["email.send"].approval_ttl_ms) == (True, 1_800_000)
    assert tools["email.send"].operation == "delete"
    assert (tools["web.search"].approval_required, tools["web.search"].operation) == (False, "")


def test_tools_without_them_keep_the_version_they_had() -> None:
    plain = MANIFEST.replace("{approval: required, operation: write}", "{}").replace(
        "{approval: {required: true, ttl: 30m}, operation: delete}", "{}")
    stripped = plain.replace(": {}", "")
    assert manifest_version(plain) == manifest_version(stripped)
    assert manifest_version(MANIFEST) != manifest_version(stripped)
    assert manifest_version(MANIFEST.replace("30m", "1800s")) == manifest_version(MANIFEST)


@pytest.mark.parametrize(("old", "new", "path"), [
    ("operation: delete", "operation: destroy", "spec.agents[0].tools[1].email.send.operation"),
    ("ttl: 30m", "ttl: soon", "spec.agents[0].tools[1].email.send.approval.ttl"),
    ("ttl: 30m", "ttl: 10ms", "spec.agents[0].tools[1].email.send.approval.ttl"),
    ("approval: required,", "approval: maybe,", "spec.agents[0].tools[0].payments.charge.approval"),
    ("ttl: 30m}", "ttl: 30m, by: ada}", "spec.agents[0].tools[1].email.send.approval.by"),
])
def test_a_bad_value_names_its_field_and_exits_2(old: str, new: str, path: str, tmp_path) -> None:
    text = MANIFEST.replace(old, new)
    with pytest.raises(ManifestError) as refused:
        load_manifest_text(text)
    assert path in str(refused.value)
    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    file = tmp_path / "system.yaml"
    file.write_text(text)
    result = CliRunner().invoke(app, ["validate", "-f", str(file)])
    assert result.exit_code == 2
    assert path in result.output and "Traceback" not in result.output
