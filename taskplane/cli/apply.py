"""``taskplane apply -f FILE``: validate a manifest and publish it to ``systems``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskplane.cli.processors import kafka_endpoints
from taskplane.contract.cron import ApplySchedules
from taskplane.contract.plan import SystemDefinition
from taskplane.exceptions import UserInputError
from taskplane.manifest import load_manifest, manifest_version
from taskplane.plan_summary import render_plan_summary
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import catalog, ensure_topics


def apply(
    file: Annotated[Path, typer.Option("--file", "-f", help="AgentSystem manifest (YAML).")],
) -> None:
    """Validate a manifest and publish it to the compacted `systems` topic."""
    try:
        manifest = load_manifest(file)
    except UserInputError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    version = manifest_version(manifest)
    plan = manifest.to_plan(version)
    kafka, topics = kafka_endpoints()
    ensure_topics(kafka_clients.admin(kafka), topics, catalog())
    with Publisher(kafka, topics) as publisher:  # canonical JSON: the connection string is masked
        publisher.define_system(SystemDefinition(plan.name, version, plan, manifest.canonical_json()))
        # Always, so an apply without schedules removes the ones a previous version had.
        publisher.to_cron(ApplySchedules(plan.name, version, plan,
                                         tuple(s.to_spec() for s in manifest.spec.schedules)))
    typer.echo(render_plan_summary(manifest))
    typer.echo(f"applied {plan.name} version {version} to {topics.systems}")


def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
