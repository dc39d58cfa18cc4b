"""``taskplane submit --wait``, ``result`` and ``runs watch`` against the real broker:
exit 0/1/124 with the result or the failure as JSON, and every bad input as one line,
exit 2, nothing written to Kafka."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from tests.taskplane.client_plane import Plane, client_commands, plane_fixture  # noqa: F401  (the fixture)

pytestmark = pytest.mark.kafka


def taskplane(plane: Plane, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=plane.client_env())
    return result.exit_code, result.stdout, result.stderr


def test_submit_wait_prints_the_result(plane: Plane) -> None:
    code, out, _ = taskplane(plane, "submit", "--system", "pair", "--input", '{"text": "cli"}', "--wait",
                             "--timeout", "120")
    assert code == 0
    assert json.loads(out) == {"count": {"text": "CLI", "letters": 3}}


def test_a_tenant_and_priority_go_through_the_dispatcher_and_show_on_the_run(plane: Plane) -> None:
    code, out, _ = taskplane(plane, "submit", "--system", "pair", "--input", '{"text": "fair"}', "--tenant", "acme",
                             "--priority", "4")
    assert code == 0
    handle = plane.client.run(out.strip())
    assert handle.result(120) == {"count": {"text": "FAIR", "letters": 4}}
    info = handle.status()
    assert (info.tenant, info.priority) == ("acme", 4)
    with pytest.raises(ValueError, match="priority: 0 is not a priority"):
        plane.client.submit("pair", {"text": "x"}, priority=0)


def test_submit_wait_of_a_dead_letter_exits_1(plane: Plane) -> None:
    code, out, err = taskplane(plane, "submit", "--system", "doomed", "--wait", "--timeout", "120")
    assert code == 1
    failure = json.loads(out)
    assert (failure["status"], failure["task"], failure["attempts"]) == ("dead_lettered", "doomed", 1)
    assert "dead-lettered" in err


def test_submit_wait_times_out_with_124(plane: Plane) -> None:
    code, _, err = taskplane(plane, "submit", "--system", "napper", "--input", '{"seconds": 60}', "--wait",
                             "--timeout", "0")
    assert code == 124 and "timeout" in err
    run_id = err.split()[1]  # "run <id>" comes first
    plane.client.cancel(run_id, "test over")


def test_result_and_watch_of_a_submitted_run(plane: Plane) -> None:
    code, out, _ = taskplane(plane, "submit", "--system", "pair", "--input", '{"text": "later"}')
    assert code == 0
    run_id = out.strip()
    code, out, _ = taskplane(plane, "result", run_id, "--timeout", "120")
    assert code == 0 and json.loads(out) == {"count": {"text": "LATER", "letters": 5}}
    code, out, _ = taskplane(plane, "runs", "watch", run_id, "--timeout", "30")
    lines = out.strip().splitlines()
    assert code == 0 and "RunSubmitted" in lines[0] and "RunSucceeded" in lines[-1]
    assert any("TaskSucceeded task=count" in line for line in lines)


@pytest.mark.parametrize(("args", "says"), [
    (["submit", "--system", "pear"], "--system: no system named 'pear' was applied (applied: doomed, empty, napper, pair)"),
    (["submit", "--system", "pair", "--input", '{"text": '], "--input: not JSON: Expecting value at line 1 column 10"),
    (["submit", "--system", "pair", "--input", "NaN"], "--input: not JSON: NaN is not a JSON value"),  # was a run
    (["submit", "--system", "pair", "--input", "[" * 20_000], "--input: not JSON this parser reads: nested too deeply"),
    (["submit", "--system", "pair", "--input", json.dumps({"text": "x" * 2_000_000})], "the broker accepts at most"),
    (["submit", "--system", "pair", "--priority", "9"], "--priority: 9 is not a priority (1..5, 5 first)"),
    (["submit", "--system", "pair", "--tenant", "a b"], "--tenant: 'a b' is not a tenant name"),
    (["submit", "--system", "pair", "--tenant", ""], "--tenant: '' is not a tenant name"),  # was a run without one
    (["result", "0123456789abcdef"], "RUN: no run '0123456789abcdef' on the log"),
    (["runs", "watch", "0123456789abcdef"], "RUN: no run '0123456789abcdef' on the log"),
])
def test_bad_input_is_one_line_and_exit_2(plane: Plane, args: list[str], says: str) -> None:
    before = client_commands(plane)
    code, out, err = taskplane(plane, *args)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and says in err
    assert client_commands(plane) == before
