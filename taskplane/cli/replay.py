"""Offset replay and rebuilds.

    taskplane replay --group taskplane.orchestrator --topic taskplane.commands --to-time 2025-01-01T10:00:00Z
    taskplane rebuild projections [--from-beginning | --from-time ISO]
    taskplane rebuild state [--write]

The offset tools themselves live in the log layer (``streams/offsets.py``), the state
fold in ``processors/orchestrator/rebuild.py``. ``replay`` moves a stopped consumer
group's committed offsets; its consumers then reprocess from there (the orchestrator rejects
what it already applied, as duplicates or stale; the projector ignores Kafka offsets: use
``rebuild projections``). Re-deciding the log without writing: ``taskplane verify``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from taskplane.cli.runs import JsonOption, database_url, fail, print_json, table
from taskplane.streams.exceptions import KafkaIOError
from taskplane.streams.offsets import (
    committed_offsets,
    live_members,
    move_offsets,
    offsets_for_time,
    watermarks,
)

rebuild_app = typer.Typer(help="Rebuild derived state from the log.", no_args_is_help=True)


def parse_time(value: str, option: str) -> int:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{option}: not an ISO 8601 time: {value!r} (e.g. 2025-01-31T10:00:00Z)")
    if parsed.tzinfo is None:
        fail(f"{option}: give a time zone (e.g. 2025-01-31T10:00:00Z), got {value!r}")
    return int(parsed.timestamp() * 1000)


# ---------------------------------------------------------------- replay


def replay(
    group: Annotated[str, typer.Option(help="Consumer group to move.")],
    topic: Annotated[str, typer.Option(help="Topic whose offsets move (full name).")],
    to_offset: Annotated[int | None, typer.Option(help="Same offset on every partition.")] = None,
    to_time: Annotated[str | None, typer.Option(help="First record at or after this ISO time.")] = None,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Earliest retained offset.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print old and new offsets only.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Even while the group has live members.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Reset a consumer group's offsets on TOPIC, printing old and new per partition."""
    if sum((to_offset is not None, to_time is not None, from_beginning)) != 1:
        fail("give exactly one of --to-offset N, --to-time ISO, --from-beginning")
    if to_offset is not None and to_offset < 0:
        fail("--to-offset: must be >= 0")
    at_ms = parse_time(to_time, "--to-time") if to_time is not None else None
    from taskplane.cli.processors import kafka_endpoints

    kafka, _topics = kafka_endpoints()
    marks = watermarks(kafka, topic)
    if not marks:
        fail(f"--topic: no topic named {topic!r}")
    try:
        members = live_members(kafka, group)
        old = committed_offsets(kafka, group, topic)
    except KafkaIOError as error:
        fail(f"--group: {error}")
    if at_ms is not None:
        new = offsets_for_time(kafka, topic, at_ms)
    else:
        new = {partition: low if from_beginning else min(max(to_offset or 0, low), high)
               for partition, (low, high) in marks.items()}
    rows = [{"partition": p, "old": old.get(p), "new": new[p], "low": marks[p][0], "high": marks[p][1]}
            for p in sorted(new)]
    if members and not dry_run and not force:
        fail(f"--group: {group!r} has {len(members)} live member(s) ({', '.join(members)}); stop them first, "
             "or pass --force (their next commit may overwrite the reset)")
    if not dry_run:
        try:
            move_offsets(kafka, group, topic, new)
        except KafkaIOError as error:
            fail(f"{error}" + (" (a group with live members cannot be reset; stop them)" if members else ""))
    if as_json:
        print_json({"group": group, "topic": topic, "dry_run": dry_run, "live_members": members,
                    "partitions": rows})
        return
    table(f"{group} on {topic}{' (dry run)' if dry_run else ''}", ["partition", "old", "new", "low", "high"],
          [[r["partition"], r["old"], r["new"], r["low"], r["high"]] for r in rows])
    if members:
        typer.echo(f"warning: {len(members)} live member(s) may overwrite these offsets with their next commit")


# ---------------------------------------------------------------- rebuilds


@rebuild_app.command("projections")
def rebuild_projections(
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="From offset 0 (default).")] = False,
    from_time: Annotated[str | None, typer.Option(help="Only events at or after this ISO time.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Fold the log into fresh read-model tables, then swap them in atomically."""
    if from_beginning and from_time:
        fail("give --from-beginning or --from-time, not both")
    at_ms = parse_time(from_time, "--from-time") if from_time else None
    from taskplane.cli.processors import kafka_endpoints
    from taskplane.processors.projector.rebuild import rebuild_projections as rebuild

    kafka, topics = kafka_endpoints()
    report = rebuild(kafka, topics, database_url(), from_time_ms=at_ms)
    if as_json:
        print_json({"schema": report.schema, "records": report.records, "swapped": report.swapped})
        return
    typer.echo(f"rebuilt {report.records} records into {report.schema}; swapped in as the live read model")


@rebuild_app.command("state")
def rebuild_state(
    write: Annotated[bool, typer.Option("--write", help="Produce rebuilt states that differ to the changelog.")]
    = False,
    force: Annotated[bool, typer.Option("--force", help="--write even while the orchestrator runs.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fold `events` through the orchestrator's evolve and compare, byte for byte, with the changelog."""
    from taskplane.cli.processors import kafka_endpoints
    from taskplane.processors.orchestrator.rebuild import compare_states, write_states

    kafka, topics = kafka_endpoints()
    result = compare_states(kafka, topics)
    if write and result.differing:
        members = live_members(kafka, f"{topics.prefix}.orchestrator")
        if members and not force:
            fail(f"the orchestrator group has {len(members)} live member(s); stop it first or pass --force")
        try:
            write_states(kafka, topics, result)
        except KafkaIOError as error:
            fail(str(error))
    if as_json:
        print_json({"keys": result.keys, "equal": result.equal, "differing": sorted(result.differing),
                    "written": bool(write and result.differing)})
    else:
        typer.echo(f"{result.keys} run states folded from {topics.events}: {result.equal} equal to the changelog, "
                   f"{len(result.differing)} differing")
        for key in sorted(result.differing)[:20]:
            typer.echo(f"  differs: {key}")
    if result.differing and not write:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)
    app.add_typer(rebuild_app, name="rebuild")
