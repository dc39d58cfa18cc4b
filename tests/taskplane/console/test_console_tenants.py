"""Tenants and priorities in the console (docs/scheduling.md): the runs table and a run's
page show them; the systems page shows a system's fair-share policy."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest
from starlette.testclient import TestClient

from taskplane.console.systems import scheduling_line
from taskplane.contract.scheduling import SchedulingPolicy, TenantShare
from tests.taskplane.console.console_rows import add_run, diamond

pytestmark = pytest.mark.postgres


def test_the_runs_table_and_the_run_page_show_tenant_and_priority(
        read_model: str, console_factory: Callable[..., TestClient]) -> None:
    now = int(time.time() * 1000)
    add_run(read_model, "fair1", system="docs", submitted_ms=now - 60_000, tasks=diamond({}))
    add_run(read_model, "plain", system="docs", submitted_ms=now - 30_000, tasks=diamond({}))
    with psycopg.connect(read_model, options="-c search_path=readmodel") as conn:
        conn.execute("UPDATE runs SET tenant = 'acme', priority = 4 WHERE run_id = 'fair1'")
    console = console_factory(read_model)
    table = console.get("/runs").text
    assert "<td>acme</td><td>4</td>" in table and "<td>–</td><td>–</td>" in table
    page = console.get("/runs/fair1").text
    assert 'tenant <strong class="tenant">acme</strong>' in page and 'priority <strong class="priority">4</strong>' in page
    assert 'class="tenant"' not in console.get("/runs/plain").text
    only = console.get("/runs?tenant=acme").text
    assert "fair1" in only and "/runs/plain" not in only
    assert console.get("/runs?tenant=a%20b").status_code == 400


def test_the_policy_line() -> None:
    policy = SchedulingPolicy((TenantShare("acme", 3, 50), TenantShare("small")), 1, 0, 30_000, 8)
    assert scheduling_line(policy) == ("tenants: acme (weight 3, at most 50), small (weight 1); others weight 1; "
                                       "priority aging 30s; window 8")
    assert scheduling_line(None) is None


def test_the_systems_page_names_each_limited_tool_once() -> None:
    from taskplane.console.systems import describe
    from taskplane.testing import compile_manifest

    definition = compile_manifest("""
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {name: limited}
spec:
  agents:
    - name: a
      tools:
        - openai.chat: {rateLimit: 100/min, concurrency: 20}
        - search: {concurrency: 3}
        - plain
    - name: b
      dependencies: [a]
      tools:
        - openai.chat: {rateLimit: 100/min, concurrency: 20}
""")
    assert describe(definition)["limits"] == ["openai.chat: 100/min, at most 20 at once", "search: at most 3 at once"]
