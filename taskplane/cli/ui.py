"""``taskplane ui``: the web console (taskplane/console), served by uvicorn.

    TASKPLANE_UI_TOKEN=... taskplane ui --port 8080
"""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from taskplane.cli.runs import database_url, fail


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)


def ui(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080; 0 picks a free one).")] = None,
) -> None:
    """Serve the web console: overview, runs, DAGs, dead letters with replay, systems.

    Read-only unless TASKPLANE_UI_TOKEN is set. Reads the read model; writes only
    ReplayTask and CancelRun."""
    import uvicorn

    from taskplane.cli.processors import kafka_endpoints
    from taskplane.console.app import build_app
    from taskplane.console.approvals import ClientDesk
    from taskplane.console.commands import PublisherCommands
    from taskplane.console.settings import ConsoleSettings
    from taskplane.console.systems import SystemCatalog
    from taskplane.console.webhooks import HookSubmitter

    try:
        overrides = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
        settings = ConsoleSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        fail(f"TASKPLANE_UI_{str(first['loc'][0]).upper()}: {first['msg']}")
    kafka, topics = kafka_endpoints()
    app = build_app(settings, database_url(), PublisherCommands(kafka, topics, settings.outcome_timeout_s),
                    SystemCatalog(kafka, topics, settings.database_timeout_s),
                    ClientDesk(kafka, topics, settings.outcome_timeout_s),
                    HookSubmitter(kafka, topics, settings.outcome_timeout_s))
    typer.echo(f"taskplane console on http://{settings.host}:{settings.port}/ "
               f"({'replay and cancel need the token' if settings.writable() else 'read-only'})")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
