"""``taskplane apply -f FILE [-f FILE ...]``: validate manifests and publish each
AgentSystem to ``systems``, with the ``AgentPolicy`` documents given beside it merged
into its plan (docs/governance.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskplane._manifest_permissions import split_permissions, with_permissions
from taskplane._manifest_policy import load_documents, policies_for, with_policies
from taskplane.cli.processors import kafka_endpoints
from taskplane.contract.cron import ApplySchedules
from taskplane.contract.plan import SystemDefinition
from taskplane.exceptions import UserInputError
from taskplane.manifest import manifest_version
from taskplane.plan_summary import render_plan_summary
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import catalog, ensure_topics


def apply(
    file: Annotated[list[Path], typer.Option("--file", "-f", help="AgentSystem, AgentPolicy or ToolPermission manifest (YAML); "
                                             "repeat to apply policies with the systems they target.")],
) -> None:
    """Validate manifests and publish each AgentSystem to the compacted `systems` topic."""
    try:
        others, permissions = split_permissions(file)  # kind: ToolPermission (_manifest_permissions.py)
        systems, policies = load_documents(others)
        if not systems:
            raise UserInputError("an AgentPolicy is applied with the systems it targets: "
                                 "taskplane apply -f system.yaml -f policy.yaml", field="--file")
    except UserInputError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(2) from None
    for document in policies:
        if not any(document.spec.targets(system.name) for system in systems):
            typer.echo(f"AgentPolicy {document.metadata.name} targets none of the systems applied", err=True)
    kafka, topics = kafka_endpoints()
    ensure_topics(kafka_clients.admin(kafka), topics, catalog())
    with Publisher(kafka, topics) as publisher:  # canonical JSON: the connection string is masked
        for manifest in systems:
            plan = with_policies(manifest.to_plan(manifest_version(manifest)), policies)
            plan = with_permissions(plan, permissions)
            publisher.define_system(SystemDefinition(plan.name, plan.version, plan, manifest.canonical_json()))
            # Always, so an apply without schedules removes the ones a previous version had.
            publisher.to_cron(ApplySchedules(plan.name, plan.version, plan,
                                             tuple(s.to_spec() for s in manifest.spec.schedules)))
            typer.echo(render_plan_summary(manifest))
            merged = len(policies_for(plan.name, policies))
            typer.echo(f"applied {plan.name} version {plan.version} to {topics.systems}"
                       + (f" ({merged} AgentPolicy merged)" if merged else ""))

def register(app: typer.Typer) -> None:
    app.command("apply")(apply)
