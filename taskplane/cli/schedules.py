"""``taskplane schedules list | pause NAME | resume NAME``: the cron schedules of the
applied systems (docs/scheduling.md, "Cron schedules")."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from taskplane.cli.processors import kafka_endpoints
from taskplane.exceptions import UnknownSystem
from taskplane.schedules import ScheduleView, applied_systems, read_schedules, set_paused
from taskplane.streams.topics import Topics

schedules_app = typer.Typer(help="Cron schedules: list, pause, resume.")


def register(app: typer.Typer) -> None:
    app.add_typer(schedules_app, name="schedules")


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@schedules_app.command("list")
def list_schedules(
    system: Annotated[str | None, typer.Option(help="Only this system's schedules.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per schedule.")] = False,
) -> None:
    """Each schedule: its expression, next slot, last fired slot and whether it is paused."""
    kafka, topics = kafka_endpoints()
    views = read_schedules(kafka, topics, system)
    if not views and system is not None:
        _refuse_unknown(kafka, topics, system)
    if as_json:
        for view in views:
            typer.echo(json.dumps({name: getattr(view, name) for name in ScheduleView.__slots__}))
        return
    if not views:
        typer.echo("no schedules (apply a manifest with spec.schedules, and run `taskplane processor run cron`)")
        return
    typer.echo(f"{'SYSTEM':<20} {'SCHEDULE':<20} {'CRON':<16} {'ZONE':<16} {'POLICY':<8} {'STATE':<7} "
               f"{'NEXT SLOT':<21} {'LAST FIRED SLOT':<21} RUNNING FIRED SKIPPED")
    for v in views:
        typer.echo(f"{v.system:<20} {v.name:<20} {v.cron:<16} {v.time_zone:<16} {v.concurrency_policy:<8} "
                   f"{'paused' if v.paused else 'active':<7} {_when(v.next_slot_ms):<21} {_when(v.last_slot_ms):<21} "
                   f"{v.running:>7} {v.fired:>5} {v.skipped:>7}")


def _refuse_unknown(kafka: dict[str, Any], topics: Topics, system: str) -> None:
    """A --system that was never applied is a mistake (exit 2), not a system without schedules."""
    applied = applied_systems(kafka, topics)
    if system not in applied:
        typer.echo(f"error: --system: {UnknownSystem(system, applied)}", err=True)
        raise typer.Exit(2)


def _pause_or_resume(name: str, system: str | None, paused: bool) -> None:
    kafka, topics = kafka_endpoints()
    found = [v for v in read_schedules(kafka, topics, system) if v.name == name]
    if not found:
        if system is not None:
            _refuse_unknown(kafka, topics, system)
        where = f" of system {system!r}" if system else ""
        typer.echo(f"error: NAME: unknown schedule {name!r}{where} (see `taskplane schedules list`)", err=True)
        raise typer.Exit(2)
    if len(found) > 1:
        systems = ", ".join(v.system for v in found)
        typer.echo(f"error: NAME: schedule {name!r} is in several systems ({systems}): pass --system", err=True)
        raise typer.Exit(2)
    who = os.environ.get("USER", "")
    set_paused(kafka, topics, found[0].system, name, paused, by=f"cli:{who}")
    typer.echo(f"{'pause' if paused else 'resume'} of {found[0].system}/{name} sent to {topics.schedules}")


@schedules_app.command("pause")
def pause(
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    system: Annotated[str | None, typer.Option(help="The system, when the name is in several.")] = None,
) -> None:
    """Stop a schedule firing (recorded on the log; `resume` starts it at its next slot)."""
    _pause_or_resume(name, system, True)


@schedules_app.command("resume")
def resume(
    name: Annotated[str, typer.Argument(help="The schedule's name.")],
    system: Annotated[str | None, typer.Option(help="The system, when the name is in several.")] = None,
) -> None:
    """Start a paused schedule again from its next slot after now (missed slots do not fire)."""
    _pause_or_resume(name, system, False)
