"""Who may replay and cancel: read-only by default, the token as a bearer header or a
login cookie (HttpOnly, SameSite), CSRF on every form, no secret on any page."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from taskplane.console.commands import Outcome
from taskplane.console.systems import describe, redact
from taskplane.contract.plan import SystemDefinition
from tests.taskplane.console.console_fakes import TOKEN, RecordingCommands
from tests.taskplane.console.console_rows import add_run, diamond

pytestmark = pytest.mark.postgres
DEAD = {"parser": "succeeded", "validator": "dead_lettered", "summarizer": "succeeded", "publisher": "blocked"}


def _csrf(console: TestClient, path: str = "/runs/d1/tasks/validator/replay") -> str:
    page = console.get(path).text
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def _login(console: TestClient, token: str = TOKEN) -> None:
    csrf = _csrf(console, "/login")
    response = console.post("/login", data={"csrf": csrf, "token": token, "next": "/dead-letters"},
                            follow_redirects=False)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/dead-letters"
    cookie = response.headers["set-cookie"]
    assert "taskplane_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert TOKEN not in cookie


def test_read_only_by_default_refuses_every_write(read_model: str, commands: RecordingCommands,
                                                  console_factory: Callable[..., TestClient]) -> None:
    add_run(read_model, "d1", tasks=diamond(DEAD))
    console = console_factory(read_model, token=None)
    preview = console.get("/runs/d1/tasks/validator/replay").text
    assert 'id="read-only"' in preview and "read-only" in console.get("/").text
    refused = console.post("/runs/d1/tasks/validator/replay", data={"csrf": _csrf(console)})
    assert refused.status_code == 403 and "the console is read-only" in refused.text
    api = console.post("/api/runs/d1/tasks/validator/replay", headers={"authorization": "Bearer anything"})
    assert api.status_code == 403 and api.json()["error"].startswith("the console is read-only")
    assert console.post("/api/runs/d1/cancel").status_code == 403
    assert commands.calls == []


def test_replay_without_the_token_is_refused(console: TestClient, read_model: str,
                                             commands: RecordingCommands) -> None:
    add_run(read_model, "d1", tasks=diamond(DEAD))
    form = console.post("/runs/d1/tasks/validator/replay", data={"csrf": _csrf(console)})
    assert form.status_code == 403 and "log in first" in form.text
    wrong = console.post("/api/runs/d1/tasks/validator/replay", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json() == {"error": "wrong token"}
    assert console.post("/api/runs/d1/tasks/validator/replay").status_code == 403
    console.get("/login")
    bad_login = console.post("/login", data={"csrf": _csrf(console, "/login"), "token": "nope"})
    assert bad_login.status_code == 403 and "wrong token" in bad_login.text
    assert commands.calls == []


def test_bearer_token_replays_and_cancels_through_the_writer(console: TestClient, read_model: str,
                                                              commands: RecordingCommands) -> None:
    add_run(read_model, "d1", tasks=diamond(DEAD))
    auth = {"authorization": f"Bearer {TOKEN}"}
    replayed = console.post("/api/runs/d1/tasks/validator/replay", headers=auth)
    assert replayed.status_code == 200 and replayed.json() == {"accepted": True, "message": "replayed"}
    assert console.post("/api/runs/d1/cancel", headers=auth).status_code == 200
    bulk = console.post("/api/dead-letters/replay", headers=auth, json={"targets": ["d1/validator"]})
    assert bulk.json()["results"] == [{"target": "d1/validator", "accepted": True, "message": "replayed"}]
    assert console.post("/api/dead-letters/replay", headers=auth, json={"targets": "d1"}).status_code == 400
    assert commands.calls == [("replay", "d1", "validator"), ("cancel", "d1"), ("replay", "d1", "validator")]


def test_login_cookie_with_csrf_replays_and_shows_the_deciders_rejection(
        console: TestClient, read_model: str, commands: RecordingCommands) -> None:
    add_run(read_model, "d1", tasks=diamond(DEAD))
    _login(console)
    no_csrf = console.post("/runs/d1/tasks/validator/replay", data={})
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.text
    forged = console.post("/runs/d1/tasks/validator/replay", data={"csrf": "forged"})
    assert forged.status_code == 403
    assert console.post("/api/runs/d1/cancel").status_code == 403  # cookie without the CSRF header
    assert commands.calls == []
    ok = console.post("/runs/d1/tasks/validator/replay", data={"csrf": _csrf(console)})
    assert ok.status_code == 200 and 'class="accepted"' in ok.text
    commands.outcome = Outcome(False, "refused by the orchestrator: task parser is succeeded, not dead-lettered")
    refused = console.post("/runs/d1/tasks/parser/replay", data={"csrf": _csrf(console)})
    assert refused.status_code == 409
    assert "refused: refused by the orchestrator: task parser is succeeded, not dead-lettered" in refused.text
    assert commands.calls == [("replay", "d1", "validator"), ("replay", "d1", "parser")]


def test_bulk_replay_replays_exactly_the_confirmed_list(console: TestClient, read_model: str,
                                                        commands: RecordingCommands) -> None:
    add_run(read_model, "d1", system="pay", tasks=diamond(DEAD))
    add_run(read_model, "d2", system="docs", tasks=diamond(DEAD))
    _login(console)
    preview = console.get("/dead-letters/replay?system=pay").text
    targets = re.findall(r'name="target" value="([^"]+)"', preview)
    assert targets == ["d1/validator"]
    add_run(read_model, "d3", system="pay", tasks=diamond(DEAD))  # arrives after the preview
    done = console.post("/dead-letters/replay", data={"csrf": _csrf(console), "target": targets})
    assert done.status_code == 200
    assert commands.calls == [("replay", "d1", "validator")]


def test_login_redirects_only_within_the_console(console: TestClient) -> None:
    csrf = _csrf(console, "/login")
    response = console.post("/login", data={"csrf": csrf, "token": TOKEN, "next": "//evil.example/x"},
                            follow_redirects=False)
    assert response.headers["location"] == "/"


def test_secrets_in_a_manifest_never_reach_the_page() -> None:
    from taskplane.testing import compile_manifest

    text = """
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: billing}
spec:
  agents:
    - name: charge
      tools: [stripe.charge]
  persistence: {backend: postgresql, connectionString: "postgresql://app:hunter2@db:5432/billing"}
"""
    definition: SystemDefinition = compile_manifest(text)
    shown = describe(definition)
    assert "hunter2" not in repr(shown)
    assert shown["summary"]["persistence"]["connectionString"] == "set"
    assert redact({"a": [{"apiKey": "k", "name": "x"}], "password": ""}) == {"a": [{"apiKey": "••••••", "name": "x"}],
                                                                          "password": ""}
