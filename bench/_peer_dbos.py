"""DBOS in bench.peers: Postgres from the embedded stack (LocalPostgres) as the system
database, the DAG workflow in one DBOS process; submits start a workflow there over
HTTP, results are each workflow's return value."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench._peers_base import HttpJson, Peer, port_open, python_module, wait_until
from bench._peers_install import PeerUnavailable, require_modules
from taskplane.devstack.kafka import LocalStackError, free_port
from taskplane.devstack.postgres import LocalPostgres


class DbosPeer(Peer):
    name = "dbos"
    _postgres: LocalPostgres | None = None

    def start(self) -> None:
        require_modules("dbos", "hypercorn")
        try:
            self._postgres = LocalPostgres(self.workdir / "postgres").start()
        except LocalStackError as error:
            raise PeerUnavailable(f"postgres: {error}") from error
        url = self._postgres.url.rsplit("/", 1)[0] + "/bench_dbos"
        port = free_port()
        server = self.launch("dbos-hypercorn", python_module(
            "hypercorn", "bench._peer_dbos_app:app", "--bind", f"127.0.0.1:{port}", "--workers", "1"),
            {"BENCH_DBOS_DATABASE_URL": url})
        self._api = HttpJson(port)
        wait_until(lambda: port_open(port), 90, "dbos", [server])

    def pids(self) -> list[int]:
        postgres = [self._postgres.pid] if self._postgres and self._postgres.pid else []
        return [*super().pids(), *postgres]

    def submit(self, index: int) -> str:
        status, body = self._api.request("POST", "/runs", index)
        if status != 200:
            raise RuntimeError(f"dbos: HTTP {status} {body}")
        return str(body)

    def end_times(self, handles: Sequence[Any], timeout_s: float) -> list[float]:
        ends = []
        for workflow_id in handles:
            status, body = self._api.request("GET", f"/runs/{workflow_id}")
            if status != 200:
                raise RuntimeError(f"dbos workflow {workflow_id}: HTTP {status} {body}")
            ends.append(float(body))
        return ends

    def stop(self) -> None:
        super().stop()
        if self._postgres is not None:
            self._postgres.stop()
            self._postgres = None
