"""Spend in the console (docs/governance.md): the overview sums the usage of the last
24 hours' runs, by system; a run's page shows its own, as decimal strings."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import psycopg
import pytest
from starlette.testclient import TestClient

from tests.taskplane.console.console_rows import add_run, diamond

pytestmark = pytest.mark.postgres


def test_the_overview_and_the_run_page_show_spend(read_model: str,
                                                  console_factory: Callable[..., TestClient]) -> None:
    now = int(time.time() * 1000)
    add_run(read_model, "a1", system="docs", submitted_ms=now - 60_000, tasks=diamond({"parser": "succeeded"}))
    add_run(read_model, "a2", system="mail", submitted_ms=now - 60_000, tasks=diamond({}))
    add_run(read_model, "old", system="docs", submitted_ms=now - 3 * 86_400_000, tasks=diamond({}))
    with psycopg.connect(read_model, options="-c search_path=readmodel") as conn:
        conn.execute("UPDATE runs SET tokens = 1200, cost_micros = 2500000 WHERE run_id = 'a1'")
        conn.execute("UPDATE runs SET tokens = 30, cost_micros = 10 WHERE run_id = 'a2'")
        conn.execute("UPDATE runs SET tokens = 99999, cost_micros = 99999999 WHERE run_id = 'old'")
    console = console_factory(read_model)
    page = console.get("/").text
    assert re.search(r'id="spend"><span class="big">2.50001</span>spent, 1230 tokens', page)
    assert "<td>docs</td><td>1200</td><td>2.5</td>" in page and "<td>mail</td><td>30</td><td>0.00001</td>" in page
    assert "used 1200 tokens, cost 2.5" in console.get("/runs/a1").text
    assert console.get("/api/overview").json()["spend"]["cost"] == "2.50001"
