"""``taskplane worker run``: serve one AgentSystem's tasks until SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Annotated, Any

import typer

from taskplane.cli.processors import kafka_endpoints
from taskplane.probes import ProcessState, ReadinessCheck
from taskplane.processes import freeze_startup_heap
from taskplane.streams.exceptions import StreamsError
from taskplane.workers.exceptions import IsolationUnavailable, WorkerError
from taskplane.workers.loader import load_user_module
from taskplane.workers.sdk import Registry
from taskplane.workers.settings import WorkerSettings

worker_app = typer.Typer(help="Workers: run agents and their tools.")


@worker_app.command("run")
def worker_run(
    system: Annotated[str, typer.Option(help="The AgentSystem to serve (as applied).")],
    concurrency: Annotated[int | None, typer.Option(min=1, help="Tasks run at once.")] = None,
    module: Annotated[str | None, typer.Option(help="Module or .py file defining the agents and tools "
                                                    "(default: examples/<system>/tools.py).")] = None,
    allow_isolation_fallback: Annotated[bool, typer.Option(
        help="Run container/wasm tools as process when that isolation is unavailable.")] = False,
    worker_id: Annotated[str | None, typer.Option(help="Stable worker id (default: host-pid-random).")] = None,
) -> None:
    """Consume the system's work, claim, run and report tasks. SIGTERM releases leases."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from taskplane.workers.approvals import drop_approval_key
    from taskplane.workers.worker import Worker

    drop_approval_key()  # before the user's module is imported: its code never sees the key
    kafka, topics = kafka_endpoints()
    overrides: dict[str, object] = {}
    if concurrency is not None:
        overrides["concurrency"] = concurrency
    if allow_isolation_fallback:
        overrides["allow_isolation_fallback"] = True
    if worker_id:
        overrides["worker_id"] = worker_id
    settings = WorkerSettings(**overrides)  # type: ignore[arg-type]
    serving = threading.Event()
    holder: list[Any] = []  # the worker, once made: its permit metrics
    state = _serve_probes(lambda: None if serving.is_set() else "loading the system's definition",
                          lambda: holder[0].permits if holder else None,
                          lambda: holder[0].speculation.started if holder and holder[0].speculation else None)
    try:
        registry = Registry.from_module(load_user_module(module, system))
        worker = Worker(kafka, topics, system, registry, settings)
        holder.append(worker)
    except IsolationUnavailable as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except (WorkerError, StreamsError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if worker.isolation_fallback:
        modes = ", ".join(sorted(m.value for m in worker.isolation_fallback))
        typer.echo(f"warning: isolation {modes} unavailable: those tools run as process", err=True)

    def stop(*_: object) -> None:
        state.stopping()  # not ready at once: no new work while leases are handed back
        worker.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    typer.echo(f"worker {worker.worker_id} serving {system}", err=True)
    state.add_check(worker.ready)
    serving.set()
    freeze_startup_heap()
    worker.run()


def _serve_probes(serving: ReadinessCheck, permits: Callable[[], Any],
                  started_ahead: Callable[[], int | None]) -> ProcessState:
    """/metrics (process metrics), /healthz and /readyz of a worker, served before it
    connects: ready once its system's definition is loaded and its consumers subscribed
    (``serving``), until SIGTERM."""
    from prometheus_client import CollectorRegistry, ProcessCollector

    from taskplane.metrics import PermitCollector, StartedAheadCollector
    from taskplane.probes import PortInUse, serve_endpoints

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(PermitCollector(permits))
    registry.register(StartedAheadCollector(started_ahead))
    state = ProcessState([serving])
    try:
        serve_endpoints("worker", registry, state)
    except PortInUse as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    return state


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")
