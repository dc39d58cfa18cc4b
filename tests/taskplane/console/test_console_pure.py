"""The console's pure parts: filters, the DAG drawing and what a replay unblocks, sessions."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from taskplane.console import dag
from taskplane.console.errors import BadRequest
from taskplane.console.filters import Cursor, parse_dead_letter_filter, parse_run_filter
from taskplane.console.security import SESSION_MAX_AGE_S, Guard

NOW = 1_700_000_000_000
TASKS = [
    {"task": "parser", "dependencies": [], "status": "succeeded", "blocked_by": None},
    {"task": "validator", "dependencies": ["parser"], "status": "dead_lettered", "blocked_by": None},
    {"task": "summarizer", "dependencies": ["parser"], "status": "succeeded", "blocked_by": None},
    {"task": "publisher", "dependencies": ["validator", "summarizer"], "status": "blocked",
     "blocked_by": "validator"},
    {"task": "notify", "dependencies": ["publisher"], "status": "blocked", "blocked_by": "validator"},
]


@pytest.mark.parametrize(("query", "field"), [
    ({"status": ["runing"]}, "status"),
    ({"since": ["yesterday"]}, "since"),
    ({"since": ["2025-01-01T00:00:00"]}, "since"),
    ({"since": ["1h"], "until": ["2h"]}, "until"),
    ({"after": ["not-a-cursor"]}, "after"),
    ({"limit": ["0"]}, "limit"),
    ({"limit": ["many"]}, "limit"),
    ({"system": ["a b"]}, "system"),
    ({"system": ["a", "b"]}, "system"),
    ({"q": ["x" * 201]}, "q"),
    ({"colour": ["red"]}, "colour"),
])
def test_a_malformed_run_filter_names_its_field(query: dict[str, list[str]], field: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse_run_filter(query, NOW, 50)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_run_filter_parses_every_field_and_round_trips_its_query() -> None:
    where = parse_run_filter({"system": ["docs"], "status": ["running,failed", "failed"], "since": ["2h"],
                              "until": ["2023-11-14T22:13:20Z"], "q": [" order-7 "], "after": ["123~abc"],
                              "limit": ["10"]}, NOW, 50)
    assert where.statuses == ("running", "failed")
    assert where.since_ms == NOW - 2 * 3_600_000
    assert where.until_ms == NOW
    assert where.search == "order-7"
    assert where.after == Cursor(123, "abc")
    assert where.limit == 10
    again = parse_run_filter({k: [v] if k != "status" else v.split(",") for k, v in
                              (pair.split("=", 1) for pair in where.query(Cursor(5, "r")).split("&"))}, NOW, 50)
    assert again.after == Cursor(5, "r") and again.system == "docs"


def test_dead_letter_filter_refuses_unknown_fields() -> None:
    assert parse_dead_letter_filter({"error": ["HTTP 500"], "all": ["1"]}).include_replayed
    with pytest.raises(BadRequest) as raised:
        parse_dead_letter_filter({"all": ["yes"]})
    assert raised.value.field == "all"


def test_downstream_and_what_a_replay_unblocks() -> None:
    assert dag.downstream(TASKS, "validator") == ["publisher", "notify"]
    assert dag.unblocks(TASKS, "validator") == ["publisher", "notify"]
    assert dag.unblocks(TASKS, "summarizer") == []
    assert dag.depths(TASKS) == {"parser": 0, "validator": 1, "summarizer": 1, "publisher": 2, "notify": 3}


def test_svg_colours_each_task_marks_blockers_and_escapes_names() -> None:
    tasks = [*TASKS, {"task": "<script>x</script>", "dependencies": ["parser"], "status": "ready",
                      "blocked_by": None}]
    drawn = dag.svg(tasks)
    assert drawn.startswith("<svg") and drawn.endswith("</svg>")
    assert 'data-task="validator" data-status="dead_lettered"' in drawn
    assert dag.STATE_COLOURS["succeeded"] in drawn and dag.STATE_COLOURS["blocked"] in drawn
    assert "blocked by validator" in drawn
    assert "<script>" not in drawn and "&lt;script&gt;" in drawn
    assert drawn.count('class="edge"') == 6


def test_sessions_are_signed_with_the_token_and_expire() -> None:
    guard = Guard(SecretStr("s3cret"))
    cookie = guard.new_session(now_s=1000)
    assert "s3cret" not in cookie
    assert guard.session_valid(cookie, now_s=1001)
    assert not guard.session_valid(cookie, now_s=1000 + SESSION_MAX_AGE_S)
    assert not Guard(SecretStr("other")).session_valid(cookie, now_s=1001)
    nonce, issued, mac = cookie.split(".")
    assert not guard.session_valid(f"{nonce}.{int(issued) + 1}.{mac}", now_s=1001)
    assert not Guard(None).writable and not Guard(None).session_valid(cookie)
