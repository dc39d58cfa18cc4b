"""``taskplane topics create`` and ``taskplane processor run``, and the Kafka endpoints
every CLI command uses (``kafka_endpoints``). ``apply`` is in cli/apply.py, ``submit``
in cli/submit.py."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from taskplane.devstack.stack import DevStackNotRunning, resolve_endpoints
from taskplane.streams import kafka_clients
from taskplane.streams.settings import StackSettings
from taskplane.streams.topics import PartitionChangeRefused, Topics, catalog, ensure_topics

topics_app = typer.Typer(help="The topic catalog.")
processor_app = typer.Typer(help="Run stateful processors.")

def kafka_endpoints() -> tuple[dict[str, Any], Topics]:
    """The librdkafka config and topic names the CLI works on: TASKPLANE_* settings, else
    the running dev stack; exit 2 with one line when there is neither."""
    settings = StackSettings()
    try:
        bootstrap = settings.bootstrap_servers or resolve_endpoints(settings).bootstrap_servers
    except DevStackNotRunning as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    return settings.kafka_config(bootstrap), Topics(settings.topic_prefix)


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int, typer.Option(min=1, help="Partitions of run-keyed topics.")] = 4,
    tool_partitions: Annotated[int, typer.Option(min=1, help="Partitions of tool-keyed topics.")] = 2,
) -> None:
    """Create missing topics (idempotent) and report drift from the catalog. Refuses to
    change the partition count of the run-keyed topics (docs/scaling.md)."""
    kafka, topics = kafka_endpoints()
    try:
        report = ensure_topics(kafka_clients.admin(kafka), topics, catalog(partitions, tool_partitions))
    except PartitionChangeRefused as error:
        typer.echo(f"error: --partitions: {error}", err=True)
        raise typer.Exit(2) from None
    for name in report.created:
        typer.echo(f"created  {name}")
    for name in report.existing:
        typer.echo(f"exists   {name}")
    for drift in report.drift:
        typer.echo(f"DRIFT    {drift.topic}: {drift.what}")
    if report.drift:
        raise typer.Exit(1)


@processor_app.command("run")
def processor_run(
    name: Annotated[str, typer.Argument(help="orchestrator | breaker | dispatcher | projector | tracer | cron")],
    instance: Annotated[str | None, typer.Option(help="Stable instance id (pod name).")] = None,
) -> None:
    """Run one processor until SIGTERM (which ends with a final commit)."""
    from taskplane.cli.runs import database_url
    from taskplane.processes import PROCESSORS, run_processor

    if name not in PROCESSORS:
        typer.echo(f"error: name: unknown processor {name!r} (one of {', '.join(PROCESSORS)})", err=True)
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from taskplane.probes import PortInUse

    kafka, topics = kafka_endpoints()
    try:
        run_processor(name, kafka, topics, database_url, instance,
                      on_ready=lambda: typer.echo(f"{name} running", err=True))
    except PortInUse as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.add_typer(topics_app, name="topics")
    app.add_typer(processor_app, name="processor")
