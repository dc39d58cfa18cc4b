"""The console's Approvals page: pending calls listed; deciding one is a write (token,
login cookie plus CSRF, or bearer) that names its person (the login's name, or the
bearer caller's header), and a forged name is refused; the overview counts them."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import psycopg
import pytest
from starlette.testclient import TestClient

from taskplane.client._approvals import ApprovalInfo
from taskplane.console.app import build_app
from taskplane.console.settings import ConsoleSettings
from tests.taskplane.console.console_fakes import TOKEN, RecordingCommands
from tests.taskplane.console.console_rows import add_run, diamond

pytestmark = pytest.mark.postgres
WAITING = ApprovalInfo("key0123456789abcdef", "run-a1", "docs", "publisher", "pay.charge", '{"amount":5}',
                       "publisher calls pay.charge", "pending", 1_700_000_000_000, 1_700_000_600_000)


@dataclass
class FakeDesk:
    decisions: list[tuple[str, bool, str, str]] = field(default_factory=list)

    def pending(self) -> list[ApprovalInfo]:
        return [] if self.decisions else [WAITING]

    def decide(self, approval_id: str, granted: bool, who: str, reason: str) -> ApprovalInfo:
        self.decisions.append((approval_id, granted, who, reason))
        return replace(WAITING, status="granted" if granted else "denied", who=who, decided_ms=1_700_000_001_000,
                       decision_reason=reason)

    def close(self) -> None:
        pass


@pytest.fixture
def desk() -> FakeDesk:
    return FakeDesk()


@pytest.fixture
def console(read_model: str, desk: FakeDesk) -> TestClient:
    app = build_app(ConsoleSettings(token=TOKEN, database_timeout_s=2.0), read_model, RecordingCommands(), None,
                    desk)
    with TestClient(app, base_url="http://127.0.0.1") as client:
        yield client


def _csrf(console: TestClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', console.get(path).text)
    assert found is not None
    return found.group(1)


def _login(console: TestClient, name: str = "") -> None:
    response = console.post("/login", data={"csrf": _csrf(console, "/login"), "token": TOKEN, "name": name,
                                            "next": "/approvals"}, follow_redirects=False)
    assert response.status_code == 303


def test_the_page_lists_what_waits_and_asks_to_log_in_to_decide(console: TestClient) -> None:
    page = console.get("/approvals").text
    assert "pay.charge" in page and "{&#34;amount&#34;:5}" in page and "log in to decide" in page


def test_a_decision_needs_the_login_and_csrf_and_records_the_logins_name(console: TestClient,
                                                                         desk: FakeDesk) -> None:
    path = f"/approvals/{WAITING.approval_id}/approve"
    assert console.post(path, data={"csrf": _csrf(console, "/login")}).status_code == 403
    _login(console, "ada")
    assert console.post(path, data={"csrf": "stale"}).status_code == 403
    assert desk.decisions == []
    done = console.post(path, data={"csrf": _csrf(console, "/approvals"), "reason": "checked"})
    assert done.status_code == 200 and "granted" in done.text and "ada" in done.text
    assert desk.decisions == [(WAITING.approval_id, True, "ada", "checked")]


def test_a_login_without_a_name_or_with_a_forged_one_decides_nothing(console: TestClient, desk: FakeDesk) -> None:
    path = f"/approvals/{WAITING.approval_id}/approve"
    _login(console)
    refused = console.post(path, data={"csrf": _csrf(console, "/approvals")})
    assert refused.status_code == 403 and "your name" in refused.text
    console.cookies.set("taskplane_who", "mallory|" + "0" * 64)
    assert console.post(path, data={"csrf": _csrf(console, "/approvals")}).status_code == 403
    assert desk.decisions == []


def test_a_denial_says_why(console: TestClient, desk: FakeDesk) -> None:
    _login(console, "ada")
    path = f"/approvals/{WAITING.approval_id}/deny"
    assert console.post(path, data={"csrf": _csrf(console, "/approvals")}).status_code == 400
    assert console.post(path, data={"csrf": _csrf(console, "/approvals"), "reason": "no"}).status_code == 200
    assert desk.decisions == [(WAITING.approval_id, False, "ada", "no")]


def test_the_api_takes_the_bearer_token_and_the_callers_name(console: TestClient, desk: FakeDesk) -> None:
    path = f"/api/approvals/{WAITING.approval_id}/approve"
    auth = {"authorization": f"Bearer {TOKEN}"}
    assert console.post(path, headers={"authorization": "Bearer nope", "x-taskplane-user": "x"}).status_code == 403
    assert console.post(path, headers=auth).status_code == 403  # nobody named
    granted = console.post(path, headers={**auth, "x-taskplane-user": "ops-bot"})
    assert granted.json()["status"] == "granted" and granted.json()["who"] == "ops-bot"
    assert desk.decisions == [(WAITING.approval_id, True, "ops-bot", "")]


def test_the_overview_counts_pending_approvals(read_model: str, console_factory: Callable[..., TestClient]) -> None:
    add_run(read_model, "a1", tasks=diamond({"parser": "succeeded", "validator": "awaiting_approval"}))
    with psycopg.connect(read_model, options="-c search_path=readmodel") as conn:
        conn.execute("UPDATE tasks SET waiting_since_ms = 1 WHERE status = 'awaiting_approval'")
    page = console_factory(read_model).get("/").text
    assert re.search(r'id="pending-approvals">1<', page)
