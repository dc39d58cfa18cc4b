"""The run page's waterfall: attempts and tool calls on a time axis, waits shaded, and the
link to an external trace UI (TASKPLANE_TRACE_URL)."""

from __future__ import annotations

import re
from collections.abc import Callable

from starlette.testclient import TestClient

from taskplane.console.waterfall import rows, svg, trace_link
from taskplane.contract.trace_ids import trace_id_hex
from tests.taskplane.console.console_rows import add_run, diamond

RUN = {"run_id": "r1", "submitted_ms": 1_000, "finished_ms": 2_000}
TASKS = [{"task": "parser"}, {"task": "writer"}]
ATTEMPTS = [
    {"task": "writer", "epoch": 2, "attempt": 2, "status": "succeeded", "started_ms": 1_600, "ended_ms": 1_900,
     "worker_id": "w1", "error": None},
    {"task": "parser", "epoch": 1, "attempt": 1, "status": "succeeded", "started_ms": 1_010, "ended_ms": 1_100,
     "worker_id": "w1", "error": None},
    {"task": "writer", "epoch": 1, "attempt": 1, "status": "failed", "started_ms": 1_120, "ended_ms": 1_300,
     "worker_id": "w2", "error": "model <timed> out"},
]
CALLS = [
    {"task": "writer", "epoch": 1, "tool": "lookup", "call_index": 0, "ok": True, "at_ms": 1_200},
    {"task": "writer", "epoch": 2, "tool": "store", "call_index": 1, "ok": True, "at_ms": 1_850},
    {"task": "writer", "epoch": 1, "tool": "lookup", "call_index": 1, "ok": False, "at_ms": 1_250},
]


def test_rows_are_attempts_in_task_order_with_their_calls_and_waits() -> None:
    got = rows(RUN, TASKS, ATTEMPTS, CALLS, now_ms=5_000)
    assert [r["label"] for r in got] == ["parser #1", "writer #1", "writer #2"]
    writer_1, writer_2 = got[1], got[2]
    assert writer_1["wait_from"] == 1_000 and writer_2["wait_from"] == 1_300, "the retry waited from the failure"
    assert [(c["start"], c["end"], c["ok"]) for c in writer_1["calls"]] == [(1_120, 1_200, True), (1_200, 1_250, False)]
    assert [(c["start"], c["end"]) for c in writer_2["calls"]] == [(1_600, 1_850)]


def test_a_running_attempt_reaches_now_and_text_is_escaped() -> None:
    running = [{**ATTEMPTS[2], "status": "running", "ended_ms": None}]
    assert rows(RUN, TASKS, running, [], now_ms=5_000)[0]["end"] == 5_000
    drawn = svg(RUN, TASKS, ATTEMPTS, CALLS, now_ms=5_000)
    assert drawn.count('class="attempt"') == 3 and drawn.count('class="call"') == 3
    assert drawn.count('class="wait"') == 3 and "model &lt;timed&gt; out" in drawn


def test_trace_link_fills_the_trace_id() -> None:
    assert trace_link(None, "ab") is None
    assert trace_link("http://j:16686/trace/{trace_id}", "ab") == "http://j:16686/trace/ab"
    assert trace_link("http://j:16686/trace/", "ab") == "http://j:16686/trace/ab"


def test_the_run_page_draws_the_waterfall_and_links_the_trace(console_factory: Callable[..., TestClient],
                                                               read_model: str) -> None:
    add_run(read_model, "r1", tasks=diamond({"parser": "succeeded", "validator": "leased", "summarizer": "pending",
                                             "publisher": "pending"}))
    plain = console_factory(read_model).get("/runs/r1").text
    assert re.search(r'<svg class="waterfall".*?</svg>', plain, re.S) and 'id="trace-link"' not in plain
    linked = console_factory(read_model, trace_url="http://jaeger:16686/trace/{trace_id}").get("/runs/r1").text
    assert f'href="http://jaeger:16686/trace/{trace_id_hex("r1")}"' in linked
