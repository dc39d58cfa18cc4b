"""``taskplane topics create``, ``taskplane processor run``, ``taskplane apply`` and
``taskplane submit``: the commands that set up and feed the log."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from confluent_kafka.admin import AdminClient

from taskplane.devstack.stack import DevStackNotRunning, resolve_endpoints
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
        report = ensure_topics(AdminClient(kafka), topics, catalog(partitions, tool_partitions))
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
    name: Annotated[str, typer.Argument(help="orchestrator | breaker | projector")],
    instance: Annotated[str | None, typer.Option(help="Stable instance id (pod name).")] = None,
) -> None:
    """Run one processor until SIGTERM (which ends with a final commit)."""
    from taskplane.cli_runs import database_url
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


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="AgentSystem manifest (YAML).")],
) -> None:
    """Validate a manifest and publish it to the compacted `systems` topic."""
    from taskplane.cli_systems import render_plan_summary
    from taskplane.contract.plan import SystemDefinition
    from taskplane.exceptions import UserInputError
    from taskplane.manifest import load_manifest, manifest_version
    from taskplane.streams.publisher import Publisher

    try:
        manifest = load_manifest(file)
    except UserInputError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    version = manifest_version(manifest)
    plan = manifest.to_plan(version)
    kafka, topics = kafka_endpoints()
    ensure_topics(AdminClient(kafka), topics, catalog())
    with Publisher(kafka, topics) as publisher:  # canonical JSON: the connection string is masked
        publisher.define_system(SystemDefinition(plan.name, version, plan, manifest.canonical_json()))
    typer.echo(render_plan_summary(manifest))
    typer.echo(f"applied {plan.name} version {version} to {topics.systems}")


def submit(
    system: Annotated[str, typer.Option(help="Name of an applied AgentSystem.")],
    run_input: Annotated[str, typer.Option("--input", help="Run input as JSON.")] = "{}",
    idempotency_key: Annotated[str | None, typer.Option(help="Same key, same run.")] = None,
) -> None:
    """Submit one run of an applied system; prints the run id."""
    from taskplane.streams.publisher import Publisher
    from taskplane.streams.table import GlobalTable

    try:
        json.loads(run_input)
    except ValueError as error:
        typer.echo(f"error: --input: not JSON: {error}", err=True)
        raise typer.Exit(2) from None
    kafka, topics = kafka_endpoints()
    with GlobalTable(kafka, topics.systems) as systems:
        systems.wait_until_caught_up()
        definition = systems.get(system)
    if definition is None:
        typer.echo(f"error: --system: no system named {system!r} was applied (taskplane apply -f FILE)", err=True)
        raise typer.Exit(2)
    with Publisher(kafka, topics) as publisher:
        run_id = publisher.submit_run(definition.plan, run_input, idempotency_key)
    typer.echo(run_id)
