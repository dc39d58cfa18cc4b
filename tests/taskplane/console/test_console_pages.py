"""The console's pages and API over a real Postgres read model: lists, filters and
keyset pages, the run page, bad input, escaping, the read model going away."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from tests.taskplane.console.console_rows import add_run, diamond

pytestmark = pytest.mark.postgres
XSS = "<script>alert('pwned')</script>"


def _runs(console: TestClient, query: str) -> tuple[list[str], str | None]:
    body = console.get(f"/api/runs?{query}").json()
    return [r["run_id"] for r in body["runs"]], body["next"]


def test_runs_are_listed_newest_first_in_keyset_pages(console: TestClient, read_model: str) -> None:
    for i in range(7):  # two runs share a submit time: the run id breaks the tie
        add_run(read_model, f"run-{i}", submitted_ms=1_700_000_000_000 + min(i, 5) * 1000)
    pages, cursor = [], None
    while True:
        ids, cursor = _runs(console, "limit=3" + (f"&after={cursor}" if cursor else ""))
        pages.append(ids)
        if cursor is None:
            break
    assert pages == [["run-6", "run-5", "run-4"], ["run-3", "run-2", "run-1"], ["run-0"]]
    html = console.get("/runs?limit=3").text
    assert 'id="next-page"' in html and "after=1700000004000~run-4" in html


def test_runs_filter_by_system_status_time_and_search(console: TestClient, read_model: str) -> None:
    add_run(read_model, "a1", system="docs", status="succeeded", input_text='{"order": "order-17"}',
            submitted_ms=1_700_000_000_000)
    add_run(read_model, "b2", system="pay", status="failed", input_text='{"order": "order-18"}',
            submitted_ms=1_700_000_100_000)
    add_run(read_model, "c3", system="pay", status="running", input_text='{"customer": "ACME"}',
            submitted_ms=1_700_000_200_000)
    assert _runs(console, "system=pay")[0] == ["c3", "b2"]
    assert _runs(console, "status=succeeded&status=failed")[0] == ["b2", "a1"]
    assert _runs(console, "status=running,failed&system=pay")[0] == ["c3", "b2"]
    assert _runs(console, "since=2023-11-14T22:14:00Z")[0] == ["c3", "b2"]
    assert _runs(console, "until=2023-11-14T22:14:00Z")[0] == ["a1"]
    assert _runs(console, "q=acme")[0] == ["c3"]
    assert _runs(console, "q=order-1")[0] == ["b2", "a1"]
    assert _runs(console, "q=b")[0] == ["b2"]  # a run id prefix
    add_run(read_model, "d4", input_text='{"deal": "50%_off"}', submitted_ms=1_700_000_300_000)
    assert _runs(console, "q=%25_")[0] == ["d4"]  # LIKE's wildcards are matched as text
    page = console.get("/runs?system=pay&status=failed").text
    assert 'data-run="b2"' in page and 'data-run="c3"' not in page


def test_a_malformed_filter_is_a_400_with_the_reason(console: TestClient) -> None:
    api = console.get("/api/runs?status=runing")
    assert api.status_code == 400
    assert api.json() == {"error": "status: unknown status 'runing' (one of running, succeeded, failed, cancelled)",
                          "field": "status"}
    page = console.get("/runs?since=yesterday")
    assert page.status_code == 400
    assert "since: not an ISO 8601 time or a span like 24h: &#39;yesterday&#39;" in page.text
    assert console.get("/dead-letters?all=maybe").status_code == 400


def test_an_unknown_run_is_a_404_page(console: TestClient) -> None:
    page = console.get("/runs/no-such-run")
    assert page.status_code == 404
    assert "Not found" in page.text and "no run &#39;no-such-run&#39; in the read model" in page.text
    assert console.get("/api/runs/no-such-run").status_code == 404
    assert console.get("/dead-letters/no-such-run/parser").status_code == 404
    assert console.get("/no/such/page").status_code == 404


def test_the_run_page_shows_the_dag_attempts_lease_journal_input_and_output(console: TestClient,
                                                                            read_model: str) -> None:
    tasks = diamond({"parser": "succeeded", "validator": "dead_lettered", "summarizer": "leased",
                     "publisher": "blocked"})
    tasks[2].update(holder="w7.docs", lease_expires_ms=1_700_000_009_000, attempts=[{"status": "running",
                                                                                    "worker": "w7.docs"}])
    add_run(read_model, "r1", input_text='{"path": "in/doc-1.pdf"}', tasks=tasks)
    page = console.get("/runs/r1")
    assert page.status_code == 200
    html = page.text
    svg = re.search(r"<svg[^>]*class=\"dag\".*?</svg>", html, re.S)
    assert svg is not None
    assert 'data-task="parser" data-status="succeeded"' in svg.group(0)
    assert "blocked by validator" in svg.group(0)
    assert "lease held by <strong>w7.docs</strong> until 2023-11-14 22:13:29" in html
    assert "HTTP 500 from fakepay" in html  # the attempts' errors
    assert "<h3>Journal</h3>" in html and "<code>key-r1-parse</code>" in html  # the tool journal
    assert "&#34;path&#34;: &#34;in/doc-1.pdf&#34;" in html  # input, pretty-printed and escaped
    assert "&#34;done&#34;: &#34;parser&#34;" in html  # output
    assert 'data-live="/fragments/runs/r1"' in html
    fragment = console.get("/fragments/runs/r1").text
    assert fragment.startswith('<h1>Run <code>r1</code>') and "<html" not in fragment


def test_input_and_errors_holding_script_are_escaped_everywhere(console: TestClient, read_model: str) -> None:
    tasks = diamond({"parser": "dead_lettered", "validator": "blocked", "summarizer": "blocked",
                     "publisher": "blocked"}, error=f"boom {XSS}")
    add_run(read_model, "x1", system="docs", input_text=f'{{"note": "{XSS}"}}', tasks=tasks)
    for path in ("/runs", "/runs/x1", "/fragments/runs/x1", "/dead-letters", "/dead-letters/x1/parser",
                 "/runs/x1/tasks/parser/replay", f"/runs?q={XSS}", "/runs/<script>alert(1)"):
        response = console.get(path)
        assert "<script>" not in response.text, path
        assert "&lt;script&gt;" in response.text, path
        assert response.headers["content-security-policy"].startswith("default-src 'none'; script-src 'self'")
    api = console.get("/api/runs/x1").json()
    assert XSS in api["run"]["input"]  # JSON carries the data as it is; pages escape it


def test_overview_counts_statuses_dead_letters_and_breakers(console: TestClient, read_model: str) -> None:
    import time

    import psycopg

    now = int(time.time() * 1000)
    add_run(read_model, "o1", status="succeeded", submitted_ms=now - 60_000)
    add_run(read_model, "o2", status="running", submitted_ms=now - 30_000,
            tasks=diamond({"parser": "dead_lettered", "validator": "blocked", "summarizer": "blocked",
                           "publisher": "blocked"}))
    with psycopg.connect(read_model, options="-c search_path=readmodel") as conn:
        conn.execute("INSERT INTO breakers VALUES ('fakepay.charge', 'open', 5, 5, 60000, %s, %s, 1, %s)",
                     (now - 1000, now + 59_000, now))
        conn.execute("INSERT INTO attempts (run_id, task, epoch, attempt, worker_id, status, started_ms, ended_ms)"
                     " VALUES ('o1', 'late', 9, 1, 'w1', 'expired', %s, %s)", (now - 9000, now - 2000))
    data = console.get("/api/overview").json()
    assert data["runs_by_status"] == {"succeeded": 1, "running": 1}
    assert data["open_dead_letters"] == 1
    assert data["lease_expirations_per_minute"] == 0.1
    assert data["retries_per_minute"] == 0.3  # the dead letter's three failed attempts
    assert [b["tool"] for b in data["breakers"]] == ["fakepay.charge"]
    html = console.get("/").text
    assert 'id="open-dead-letters">1<' in html and "fakepay.charge" in html and "b-open" in html
    assert '<rect class="seg s-succeeded"' in html


def test_dead_letters_list_detail_and_replay_preview(console: TestClient, read_model: str) -> None:
    add_run(read_model, "d1", system="pay", tasks=diamond({"parser": "succeeded", "validator": "dead_lettered",
                                                          "summarizer": "succeeded", "publisher": "blocked"}))
    add_run(read_model, "d2", system="docs", tasks=diamond({"parser": "dead_lettered", "validator": "blocked",
                                                           "summarizer": "blocked", "publisher": "blocked"},
                                                          error="disk full"))
    listed = console.get("/api/dead-letters?error=http").json()["dead_letters"]
    assert [(d["run_id"], d["task"], d["blocked"]) for d in listed] == [("d1", "validator", 1)]
    detail = console.get("/dead-letters/d1/validator").text
    assert "HTTP 500 from fakepay" in detail and "Blocked downstream: publisher" in detail
    preview = console.get("/runs/d1/tasks/validator/replay").text
    assert 'class="unblocks">publisher<' in preview and 'id="confirm-replay"' in preview
    bulk = console.get("/dead-letters/replay").text
    assert 'value="d1/validator"' in bulk and 'value="d2/parser"' in bulk
    assert "validator, summarizer, publisher" in bulk  # what d2/parser unblocks
    assert console.get("/dead-letters/replay?system=docs").text.count('name="target"') == 1


def test_the_read_model_unreachable_is_a_banner_not_a_crash(console_factory: Callable[..., TestClient]) -> None:
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    url = f"postgresql://taskplane:hunter2-secret@127.0.0.1:{port}/nowhere"
    console = console_factory(url, database_timeout_s=1.0)
    for path in ("/", "/runs", "/runs/r1", "/dead-letters"):
        page = console.get(path)
        assert page.status_code == 503, path
        assert 'class="banner"' in page.text and "read model" in page.text
        assert "hunter2" not in page.text and str(port) not in page.text
    assert console.get("/api/runs").status_code == 503
    assert console.get("/healthz").status_code == 200
    assert console.get("/readyz").status_code == 503


def test_readyz_waits_for_the_projectors_schema(fresh_database: str,
                                                console_factory: Callable[..., TestClient]) -> None:
    from tests.taskplane.console.console_rows import create_read_model

    console = console_factory(fresh_database)
    assert console.get("/readyz").status_code == 503
    assert console.get("/runs").status_code == 503
    create_read_model(fresh_database)
    assert console.get("/readyz").status_code == 200
    assert console.get("/runs").status_code == 200
