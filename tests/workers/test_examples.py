"""The example tools against real Postgres and the local HTTP services."""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from examples.flaky.server import serve as serve_flaky
from taskplane._examples.fakepay import serve as serve_fakepay
from taskplane.contract.plan import Isolation
from taskplane.workers.exceptions import ToolError
from taskplane.workers.isolation import Limits, run_tool
from taskplane.workers.loader import load_user_module
from taskplane.workers.sdk import Registry


def _registry(system: str) -> Registry:
    return Registry.from_module(load_user_module(None, system))


def _background(server: ThreadingHTTPServer) -> Iterator[str]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def fakepay(fresh_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TASKPLANE_DATABASE_URL", fresh_database)
    for url in _background(serve_fakepay(0, fresh_database)):
        monkeypatch.setenv("TASKPLANE_FAKEPAY_URL", url)
        yield url


def _count(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/charges/count") as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


@pytest.mark.postgres
def test_a_repeated_charge_key_charges_once_and_the_ledger_records_once(fakepay: str, fresh_database: str) -> None:
    tools = _registry("payment-processor")
    args = {"amount": 1250, "currency": "usd", "customer": "cus_1"}
    first = run_tool(tools.tool("stripe.charge"), args, "key-1", Isolation.PROCESS, Limits(10_000))
    again = run_tool(tools.tool("stripe.charge"), args, "key-1", Isolation.PROCESS, Limits(10_000))
    assert first["id"] == again["id"] and again["replayed"] is True
    assert _count(fakepay) == {"charges": 1, "requests": 2}
    ledger = {"charge_id": first["id"], "amount": 1250, "currency": "usd", "run_id": "r1"}
    assert run_tool(tools.tool("ledger.record"), ledger, "k", Isolation.PROCESS, Limits(10_000))["recorded"]
    assert not run_tool(tools.tool("ledger.record"), ledger, "k", Isolation.NONE, Limits(10_000))["recorded"]
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*) FROM ledger").fetchone() == (1,)


@pytest.mark.postgres
def test_the_document_tools_extract_validate_summarize_and_store(fresh_database: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPLANE_DATABASE_URL", fresh_database)
    module = load_user_module(None, "document-pipeline")
    documents = module.extract("examples/document-pipeline/docs")
    assert {d["name"] for d in documents} == {"breaker.json", "kafka-log.md", "leases.txt"}
    assert all(module.schema_validate(d, module.DOCUMENT_SCHEMA)["valid"] for d in documents)
    assert not module.schema_validate({"name": "x", "kind": "pdf", "text": ""}, module.DOCUMENT_SCHEMA)["valid"]
    summary = module.summarize(documents[2]["text"], 1)
    assert summary.endswith(".") and "lease" in summary.lower()
    tools = Registry.from_module(module)
    results = {"documents": [{"name": "a", "summary": summary, "valid": True}]}
    for _ in range(2):  # an upsert: storing twice leaves one row
        run_tool(tools.tool("database.store"), {"run_id": "r1", "results": results}, "k1", Isolation.PROCESS,
                 Limits(10_000))
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT count(*), min(idempotency_key) FROM document_results").fetchone() == (1, "k1")


def test_web_search_fails_on_the_flaky_servers_errors_and_times_out_on_its_latency(
        monkeypatch: pytest.MonkeyPatch) -> None:
    tools = _registry("researcher")
    for url in _background(serve_flaky(0, failure_rate=0.0, latency_ms=0)):
        monkeypatch.setenv("TASKPLANE_FLAKY_URL", url)
        found = run_tool(tools.tool("web.search"), {"query": "kafka leases"}, "k", Isolation.PROCESS, Limits(10_000))
        assert [r["url"] for r in found["results"]] == ["https://example.org/kafka", "https://example.org/leases"]
        urllib.request.urlopen(urllib.request.Request(f"{url}/config", method="POST",
                                                      data=json.dumps({"failure_rate": 1.0}).encode()))
        with pytest.raises(ToolError, match="HTTP 503"):
            run_tool(tools.tool("web.search"), {"query": "q"}, "k", Isolation.PROCESS, Limits(10_000))
        urllib.request.urlopen(urllib.request.Request(f"{url}/config", method="POST",
                                                      data=json.dumps({"failure_rate": 0, "latency_ms": 3000}).encode()))
        with pytest.raises(ToolError, match="killed after 500 ms"):
            run_tool(tools.tool("web.search"), {"query": "q"}, "k", Isolation.PROCESS, Limits(500))
