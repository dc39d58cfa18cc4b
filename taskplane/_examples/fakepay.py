"""A local fake payment service: ``POST /charges`` with an ``Idempotency-Key`` header
stores a charge in Postgres once per key; a repeated key returns the first charge and
inserts nothing, so duplicate charges are countable (``GET /charges/count``).

    python -m examples.fakepay.server --port 8402 [--database-url URL]   # in a checkout
    python -m taskplane._examples.fakepay --port 8402                     # from an install
"""

from __future__ import annotations

import argparse
import json
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg

from taskplane._examples.jsonhttp import JsonHandler

SCHEMA = ("CREATE TABLE IF NOT EXISTS fakepay_charges (idempotency_key text PRIMARY KEY, id text NOT NULL, "
          "amount bigint NOT NULL, currency text NOT NULL, customer text NOT NULL, "
          "requests int NOT NULL DEFAULT 1, created_at timestamptz NOT NULL DEFAULT now())")


def make_handler(database_url: str) -> type[BaseHTTPRequestHandler]:
    class Handler(JsonHandler):
        def do_GET(self) -> None:  # noqa: N802
            if self.path != "/charges/count":
                return self._reply(404, {"error": "not found"})
            with psycopg.connect(database_url) as conn:
                row = conn.execute("SELECT count(*), coalesce(sum(requests), 0) FROM fakepay_charges").fetchone()
            assert row is not None
            self._reply(200, {"charges": row[0], "requests": row[1]})

        def do_POST(self) -> None:  # noqa: N802
            key = self.headers.get("Idempotency-Key")
            if self.path != "/charges" or not key:
                return self._reply(400, {"error": "POST /charges needs an Idempotency-Key header"})
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with psycopg.connect(database_url) as conn:
                inserted = conn.execute(
                    "INSERT INTO fakepay_charges (idempotency_key, id, amount, currency, customer) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                    (key, "ch_" + uuid.uuid4().hex[:16], int(body["amount"]), body.get("currency", "usd"),
                     body.get("customer", "anonymous"))).fetchone()
                if inserted is None:
                    conn.execute("UPDATE fakepay_charges SET requests = requests + 1 WHERE idempotency_key = %s",
                                  (key,))
                row = conn.execute("SELECT id, amount, currency, customer FROM fakepay_charges "
                                   "WHERE idempotency_key = %s", (key,)).fetchone()
            assert row is not None
            reply = {"id": row[0], "amount": row[1], "currency": row[2], "customer": row[3],
                     "replayed": inserted is None}
            parent = self.headers.get("traceparent")  # W3C: 00-<trace id>-<parent span>-<flags>
            if parent and parent.count("-") == 3:
                reply["trace_id"] = parent.split("-")[1]
            self._reply(201 if inserted else 200, reply)

    return Handler


def serve(port: int, database_url: str, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SCHEMA)
    return ThreadingHTTPServer((host, port), make_handler(database_url))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8402)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    from taskplane._examples.db import database_url

    server = serve(args.port, args.database_url or database_url())
    print(f"fakepay on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
