"""``taskplane validate``: a summary and exit 0, or every problem and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from typer.testing import CliRunner

from taskplane.cli.systems import register
from taskplane.manifest import load_manifest
from taskplane.plan_summary import render_plan_summary

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BAD = """\
apiVersion: orloj.dev/v1
kind: AgentSystem
metadata:
  name: document-pipeline
spec:
  agents:
    - name: parser
      tools:
        - web.search: {timeout: 10 s}
    - name: validator
      dependencies: [parser]
    - name: publisher
      dependencies: [validatr]
  persistence:
    connectionString: postgres://user:hunter2@db/taskplane
"""


def app() -> typer.Typer:
    app = typer.Typer()
    app.callback()(lambda: None)  # keep `validate` a subcommand, as in the real CLI
    register(app)
    return app


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app(), ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_a_good_manifest_prints_its_summary_in_dependency_order() -> None:
    code, out, err = run("-f", str(EXAMPLES / "document-pipeline" / "system.yaml"))
    assert code == 0, err
    assert out.startswith("AgentSystem document-pipeline (version ")
    assert [line.split()[0] for line in out.splitlines()[2:6]] == [
        "parser",
        "validator",
        "summarizer",
        "publisher",
    ]
    assert "after: validator, summarizer" in out and "tools: database.store" in out
    assert "lease 10s, maxRetries 3" in out and "retry delays before jitter: 1s, 2s, 4s" in out


def test_a_long_retry_schedule_is_summarised_not_overflowed(tmp_path: Path) -> None:
    # 2 ** 1024 overflowed a float in the summary (a traceback), and each retry was listed.
    path = tmp_path / "system.yaml"
    path.write_text((EXAMPLES / "document-pipeline" / "system.yaml").read_text().replace(
        "maxRetries: 3", "maxRetries: 1100"))
    code, out, err = run("-f", str(path))
    assert code == 0, err
    assert "retry delays before jitter: 1s, 2s, 4s, 8s, 16s, 32s, 1m, then 1m for 1093 more" in out


def test_a_bad_manifest_exits_2_with_every_path_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "system.yaml"
    path.write_text(BAD)
    code, out, err = run("--file", str(path))
    assert code == 2
    assert "spec.agents[0].tools[0].web.search.timeout: bad duration '10 s'" in err
    assert "spec.agents[2].dependencies: unknown agent 'validatr'" in err
    assert "refused (2 problems)" in err
    assert "Traceback" not in out + err and "hunter2" not in out + err


def test_json_output(tmp_path: Path) -> None:
    code, out, _ = run("-f", str(EXAMPLES / "researcher" / "system.yaml"), "--json")
    summary = json.loads(out)
    assert code == 0 and summary["valid"] and summary["name"] == "researcher"
    assert summary["agents"][0]["tools"][0]["fallback"] == "web.cached_search"
    assert summary["execution"]["leaseTimeout"] == "10s"

    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    code, out, _ = run("-f", str(path), "--json")
    assert code == 2
    problems = json.loads(out)["problems"]
    assert problems[1] == {
        "path": "spec.agents[2].dependencies",
        "reason": "unknown agent 'validatr' (did you mean 'validator'?)",
    }


def test_yaml_syntax_and_missing_files_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec:\n  agents: [\n")
    code, out, err = run("-f", str(path))
    assert code == 2 and "line 3, column 1: invalid YAML" in err and "Traceback" not in err
    code, out, err = run("-f", str(tmp_path / "absent.yaml"))
    assert code == 2 and "absent.yaml" in err and "Traceback" not in out + err


def test_the_summary_never_shows_the_connection_string(tmp_path: Path) -> None:
    text = BAD.replace("10 s", "10s").replace("validatr", "validator")
    summary = render_plan_summary(load_manifest(text))
    assert "hunter2" not in summary and "publisher" in summary
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    code, out, err = run("-f", str(path), "--json")
    assert code == 0 and "hunter2" not in out + err
    assert json.loads(out)["persistence"]["connectionString"] == "set"


def test_validate_is_registered_on_the_taskplane_cli() -> None:
    from taskplane.cli import app as taskplane_app

    result = CliRunner().invoke(
        taskplane_app, ["validate", "-f", str(EXAMPLES / "payment-processor" / "system.yaml")]
    )
    assert result.exit_code == 0, result.output
    assert "payment-processor" in result.stdout
