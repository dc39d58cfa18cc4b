"""The web console's answer times over a big read model it fills itself.

Fills a fresh database (the external Postgres when TASKPLANE_DATABASE_URL is set,
else an embedded one) with N runs (bench/_readmodel_fill.py), starts the console
(uvicorn, read-only) on a free port and requests over HTTP, one at a time:
- the runs page with the filters an operator uses (none, status, system, both, a
  time window, input search, run id prefix) and keyset pages deep into the list;
- run pages of random runs (DAG SVG, attempts, journal).

    python -m bench.console [--runs N] [--requests N] [--quick]

Last line: JSON with runs, runs_list_p99_ms and run_page_p99_ms (the issue's
targets: 300 and 200 ms at 100,000 runs), and the figures per filter.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2 as httpx
import psycopg
import uvicorn

from bench._readmodel_fill import SYSTEMS, fill, run_id
from taskplane.console.app import build_app
from taskplane.console.commands import PublisherCommands
from taskplane.console.settings import ConsoleSettings
from taskplane.processors.projector.schema import migrate
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import Topics


@contextmanager
def postgres() -> Iterator[str]:
    external = StackSettings().database_dsn()
    if external:
        yield external
        return
    from taskplane.devstack.postgres import LocalPostgres

    with tempfile.TemporaryDirectory(prefix="taskplane-bench-") as tmp:
        server = LocalPostgres(Path(tmp) / "postgres")
        server.start()
        try:
            yield server.url
        finally:
            server.stop()


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    name = f"bench_console_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def served(database_url: str) -> Iterator[str]:
    """The console on a free port, read-only (its command writer is never reached)."""
    settings = ConsoleSettings(token=None, pool_size=4)
    app = build_app(settings, database_url, PublisherCommands({"bootstrap.servers": "127.0.0.1:9"},
                                                              Topics("bench"), 1.0), None)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def timed(client: httpx.Client, path: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {path}: {response.status_code} {response.text[:300]}")
    return elapsed, response


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1)


def list_queries(rng: random.Random, runs: int) -> list[tuple[str, str]]:
    """(label, query) of the runs page, in the mix an operator would use."""
    probe = run_id(1 + rng.randrange(runs))
    return [
        ("all", ""),
        ("status", f"status={rng.choice(('failed', 'running', 'cancelled'))}"),
        ("system", f"system={rng.choice(SYSTEMS)}"),
        ("system_status", f"system={rng.choice(SYSTEMS)}&status={rng.choice(('failed', 'running'))}"),
        ("window", "since=24h&status=succeeded"),
        ("search_input", f"q=order-{1 + rng.randrange(runs)}"),
        ("search_common", "q=priority"),
        ("run_id_prefix", f"q={probe[:8]}"),
    ]


def measure(base: str, runs: int, requests: int, seed: int = 11) -> dict[str, Any]:
    rng = random.Random(seed)
    by_label: dict[str, list[float]] = {}
    list_samples: list[float] = []
    page_samples: list[float] = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for _ in range(20):  # warm-up: pool connections, templates, caches
            timed(client, "/runs")
            timed(client, f"/runs/{run_id(1 + rng.randrange(runs))}")
        while len(list_samples) < requests:
            for label, query in list_queries(rng, runs):
                elapsed, _ = timed(client, f"/runs?{query}")
                by_label.setdefault(label, []).append(elapsed)
                list_samples.append(elapsed)
            query, depth = "", 0  # keyset pages deep into the whole list
            while depth < 10:
                elapsed, response = timed(client, f"/runs?{query}")
                by_label.setdefault("keyset_page", []).append(elapsed)
                list_samples.append(elapsed)
                marker = response.text.find('id="next-page"')
                if marker < 0:
                    break
                href = response.text.rfind('href="/runs?', 0, marker)
                query = response.text[href + len('href="/runs?'):response.text.find('"', href + 7)]
                query = query.replace("&amp;", "&")
                depth += 1
        for _ in range(requests):
            elapsed, _ = timed(client, f"/runs/{run_id(1 + rng.randrange(runs))}")
            page_samples.append(elapsed)
        overview = [timed(client, "/")[0] for _ in range(20)]
    return {
        "runs_list_p99_ms": p99(list_samples), "runs_list_p50_ms": round(statistics.median(list_samples), 1),
        "run_page_p99_ms": p99(page_samples), "run_page_p50_ms": round(statistics.median(page_samples), 1),
        "overview_p99_ms": p99(overview),
        "runs_list_requests": len(list_samples), "run_page_requests": len(page_samples),
        "runs_list_p99_ms_by_filter": {label: p99(samples) for label, samples in sorted(by_label.items())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2_000, help="of each kind (runs list, run page)")
    parser.add_argument("--quick", action="store_true", help="20,000 runs, 300 requests of each kind")
    args = parser.parse_args()
    if args.quick:
        args.runs = 20_000
    requests = 300 if args.quick else args.requests
    started = time.monotonic()
    with postgres() as server_url, fresh_database(server_url) as url:
        with psycopg.connect(url) as conn:
            migrate(conn)  # type: ignore[arg-type]
        with psycopg.connect(url, options="-c search_path=readmodel") as conn:
            fill_started = time.monotonic()
            counts = fill(conn, args.runs, int(time.time() * 1000))  # type: ignore[arg-type]
            conn.commit()
        print(f"filled {counts} in {time.monotonic() - fill_started:.1f}s", flush=True)
        with served(url) as base:
            figures = measure(base, args.runs, requests)
    print(json.dumps({"runs": args.runs, **figures, "rows": counts,
                      "seconds": round(time.monotonic() - started, 1)}))


if __name__ == "__main__":
    main()
