"""Celery in bench.peers: Debian's redis-server (broker and result backend) and a
prefork worker with 2 processes; submits are ``apply_async`` of the DAG's canvas,
results are the publisher's return value read from the backend."""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from typing import Any

from bench._peers_base import Peer, port_open, python_module, wait_until
from bench._peers_install import redis_server, require_modules
from taskplane.devstack.kafka import free_port


class CeleryPeer(Peer):
    name = "celery"

    def start(self) -> None:
        require_modules("celery", "redis")
        binary = redis_server()
        port = free_port()
        redis = self.launch("redis-server", [binary, "--port", str(port), "--bind", "127.0.0.1",
                                             "--dir", str(self.workdir)])
        wait_until(lambda: port_open(port), 30, "redis-server", [redis])
        url = f"redis://127.0.0.1:{port}/0"
        worker = self.launch("celery-worker", python_module(
            "celery", "-A", "bench._peer_celery_app", "worker", "--pool", "prefork", "--concurrency", "2",
            "--loglevel", "WARNING"), {"BENCH_CELERY_REDIS": url})
        from bench import _peer_celery_app  # celery is imported only when it is installed

        self._app = _peer_celery_app
        self._app.app.conf.broker_url = url  # before the app's first connection
        self._app.app.conf.result_backend = url
        probe = self.submit(-1)
        wait_until(lambda: probe.ready(), 60, "celery worker", [redis, worker])

    def stop(self) -> None:
        # A chain's AsyncResults sit in reference cycles; their __del__ unsubscribes through
        # the result backend. Collected at interpreter exit, Redis is gone by then and each
        # prints a "Retry limit exceeded" traceback: collect them while Redis still runs.
        gc.collect()
        # Results the harness still holds are collected only at exit: their unsubscribe
        # is moot once Redis stops, so it is not attempted (a traceback each, otherwise).
        module = getattr(self, "_app", None)
        consumer = getattr(module.app.backend, "result_consumer", None) if module is not None else None
        if consumer is not None:
            consumer.subscribed_to.clear()
        super().stop()

    def submit(self, index: int) -> Any:
        return self._app.dag(index).apply_async()

    def end_times(self, handles: Sequence[Any], timeout_s: float) -> list[float]:
        # Polled from the backend (a GET per check): AsyncResult.get() would also wait on
        # a Redis subscription per run, which is harness work on the system's Redis.
        deadline = time.monotonic() + timeout_s
        ends = []
        for result in handles:
            while not result.ready():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"celery run {result.id} unfinished after {timeout_s:.0f}s")
                time.sleep(0.01)
            ends.append(float(result.result))
        return ends

