"""A local flaky search service: ``GET /search?q=...`` fails with probability
``failure_rate`` (HTTP 503) and answers after ``latency_ms``. ``POST /config`` with
``{"failure_rate": .., "latency_ms": ..}`` changes both at run time (to show a breaker
opening and closing). Failures are drawn from a seeded generator: runs repeat.

    python -m examples.flaky.server --port 8403 --failure-rate 0.3 --latency-ms 200
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from taskplane._examples.jsonhttp import JsonHandler


class FlakyState:
    def __init__(self, failure_rate: float, latency_ms: int, seed: int = 7) -> None:
        self.failure_rate = failure_rate
        self.latency_ms = latency_ms
        self.requests = 0
        self.failures = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> tuple[bool, float]:
        with self._lock:
            self.requests += 1
            failed = self._random.random() < self.failure_rate
            self.failures += failed
            return failed, self.latency_ms / 1000


def make_handler(state: FlakyState) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802
            url = urlsplit(self.path)
            if url.path == "/stats":
                return self._reply(200, {"requests": state.requests, "failures": state.failures})
            if url.path != "/search":
                return self._reply(404, {"error": "not found"})
            query = parse_qs(url.query).get("q", [""])[0]
            failed, delay = state.draw()
            time.sleep(delay)
            if failed:
                return self._reply(503, {"error": "upstream unavailable"})
            words = query.split() or ["nothing"]
            self._reply(200, {"query": query, "results": [
                {"title": f"{word.title()} explained", "url": f"https://example.org/{word}"} for word in words]})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/config":
                return self._reply(404, {"error": "not found"})
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            state.failure_rate = float(body.get("failure_rate", state.failure_rate))
            state.latency_ms = int(body.get("latency_ms", state.latency_ms))
            self._reply(200, {"failure_rate": state.failure_rate, "latency_ms": state.latency_ms})

    return Handler


def serve(port: int, failure_rate: float, latency_ms: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    return ThreadingHTTPServer((host, port), make_handler(FlakyState(failure_rate, latency_ms)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8403)
    parser.add_argument("--failure-rate", type=float, default=0.3)
    parser.add_argument("--latency-ms", type=int, default=100)
    args = parser.parse_args()
    server = serve(args.port, args.failure_rate, args.latency_ms)
    print(f"flaky on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
