"""Restate in bench.peers: restate-server (the npm package's binary) and the DAG
service under hypercorn; submits are ingress ``send`` calls, results are read back by
attaching to each invocation."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from bench._peers_base import HttpJson, Peer, port_open, python_module, wait_until
from bench._peers_install import PeerUnavailable, require_modules, restate_server
from taskplane.devstack.kafka import free_port


class RestatePeer(Peer):
    supports_keys = True
    name = "restate"

    def start(self) -> None:
        require_modules("restate", "hypercorn")
        binary = restate_server(self.cache_dir)
        ingress, admin, fabric, service = (free_port() for _ in range(4))
        env = {"RESTATE_INGRESS__BIND_ADDRESS": f"127.0.0.1:{ingress}",
               "RESTATE_ADMIN__BIND_ADDRESS": f"127.0.0.1:{admin}",
               "RESTATE_BIND_ADDRESS": f"127.0.0.1:{fabric}"}
        server = self.launch("restate-server", [str(binary), "--no-logo", "--listen-mode", "tcp",
                                                "--bind-ip", "127.0.0.1", "--node-name", "bench",
                                                "--base-dir", str(self.workdir / "restate-data")], env)
        endpoint = self.launch("restate-hypercorn", python_module(
            "hypercorn", "bench._peer_restate_app:app", "--bind", f"127.0.0.1:{service}", "--workers", "1"))
        self._ingress = HttpJson(ingress)
        admin_api = HttpJson(admin)
        wait_until(lambda: port_open(service) and self._healthy(admin_api, "/health")
                   and self._healthy(self._ingress, "/restate/health"), 60, "restate", [server, endpoint])
        status, body = admin_api.request("POST", "/deployments", {"uri": f"http://127.0.0.1:{service}"})
        if status >= 300:
            raise PeerUnavailable(f"restate refused the deployment: HTTP {status} {body}")

    @staticmethod
    def _healthy(api: HttpJson, path: str) -> bool:
        try:
            return api.request("GET", path)[0] == 200
        except (OSError, ValueError):
            return False

    def submit(self, index: int) -> str:
        # Restate's own idempotency: the ingress keeps the key's invocation (--keyed).
        key = {"idempotency-key": uuid.uuid4().hex} if self.keyed else None
        status, body = self._ingress.request("POST", "/Dag/run/send", index, key)
        if status >= 300:
            raise RuntimeError(f"restate ingress: HTTP {status} {body}")
        return str(body["invocationId"])

    def end_times(self, handles: Sequence[Any], timeout_s: float) -> list[float]:
        ends = []
        for invocation in handles:
            status, body = self._ingress.request("GET", f"/restate/invocation/{invocation}/attach")
            if status != 200:
                raise RuntimeError(f"restate invocation {invocation}: HTTP {status} {body}")
            ends.append(float(body))
        return ends
