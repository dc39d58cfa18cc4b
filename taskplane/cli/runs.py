"""``taskplane runs list|show|prune``: runs and their DAGs, from the read model.

    taskplane runs show 3f2a...   # each task's state, attempts, lease holder, last error, tool journal
    taskplane runs prune --older-than 30d   # delete finished runs from the read model, in batches
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from taskplane.readmodel import RUN_STATUSES, ReadModel, ReadModelError

runs_app = typer.Typer(help="Runs and their task DAGs (list, show: the read model; watch: the log).",
                       no_args_is_help=True)
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def database_url() -> str:
    from taskplane.devstack.stack import DevStackNotRunning, resolve_endpoints
    from taskplane.streams.settings import StackSettings

    settings = StackSettings()
    if settings.database_dsn():
        return settings.database_dsn()  # type: ignore[return-value]
    try:
        return resolve_endpoints(settings).database_url
    except DevStackNotRunning as error:
        fail(str(error))


@contextmanager
def read_model() -> Iterator[ReadModel]:
    try:
        with ReadModel(database_url()) as model:
            yield model
    except ReadModelError as error:
        fail(str(error))


def when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=True, default=str))


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    out = Table(title=title)
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    Console().print(out)


@runs_app.command("list")
def runs_list(
    system: Annotated[str | None, typer.Option(help="Only runs of this AgentSystem.")] = None,
    status: Annotated[list[str] | None, typer.Option(help=f"One of {', '.join(RUN_STATUSES)}; repeatable.")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 200,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first."""
    bad = [s for s in status or [] if s not in RUN_STATUSES]
    if bad:
        fail(f"--status: unknown status {bad[0]!r} (one of {', '.join(RUN_STATUSES)})")
    with read_model() as model:
        rows = model.runs(system, status or None, limit)
        if system is not None and not rows and system not in model.systems():
            fail(f"--system: no runs of a system named {system!r}")
    if as_json:
        print_json(rows)
        return
    table("runs", ["run", "system", "tenant", "priority", "status", "tasks", "submitted", "finished", "reason"], [
        [r["run_id"], r["system"], r["tenant"] or None, r["priority"] or None, r["status"],
         f"{r['tasks_succeeded']}/{r['tasks_total']}", when(r["submitted_ms"]), when(r["finished_ms"]), r["reason"]]
        for r in rows])


@runs_app.command("show")
def runs_show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id.")],
    as_json: JsonOption = False,
) -> None:
    """A run's DAG: each task's state, attempts, lease holder, last error and tool journal."""
    with read_model() as model:
        run = model.run(run_id)
        tasks, attempts, calls = model.tasks(run_id), model.attempts(run_id), model.tool_calls(run_id)
    if as_json:
        print_json({"run": run, "tasks": tasks, "attempts": attempts, "tool_calls": calls})
        return
    tree = Tree(f"[bold]{run['run_id']}[/] {run['system']} {run['version']}: {run['status']}"
                + (f" ({run['reason']})" if run["reason"] else ""))
    for task in tasks:
        deps = f" after {', '.join(task['dependencies'])}" if task["dependencies"] else ""
        line = f"[bold]{task['task']}[/]{deps}: {task['status']} attempt {task['attempt']}"
        if task["holder"]:
            line += f", leased by {task['holder']} (epoch {task['epoch']})"
        if task["blocked_by"]:
            line += f", blocked by {task['blocked_by']}"
        if task["last_error"]:
            line += f", last error: {task['last_error']}"
        node = tree.add(line)
        for attempt in (a for a in attempts if a["task"] == task["task"]):
            node.add(f"attempt {attempt['attempt']} epoch {attempt['epoch']} {attempt['worker_id']}: "
                     f"{attempt['status']} renewals {attempt['renewals']}"
                     + (f" error: {attempt['error']}" if attempt["error"] else ""))
        for call in (c for c in calls if c["task"] == task["task"]):
            outcome = f"ok {call['result']}" if call["ok"] else f"failed {call['error']}"
            node.add(f"tool #{call['call_index']} {call['tool']} (epoch {call['epoch']}, key {call['key'][:12]}): "
                     f"{outcome}")
    Console().print(tree)



@runs_app.command("prune")
def runs_prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Finished at least this long ago, e.g. 30d.")],
    batch_size: Annotated[int, typer.Option(min=1, help="Runs deleted per short transaction.")] = 500,
    as_json: JsonOption = False,
) -> None:
    """Delete finished runs (with their tasks, attempts, tool calls, dead letters) from
    the read model. The events topic keeps them: a rebuild from a time brings them back."""
    import re
    import time

    import psycopg

    from taskplane.durations import DurationError, parse_duration_ms
    from taskplane.processors.projector.prune import prune_finished_runs
    from taskplane.processors.projector.schema import LIVE_SCHEMA, connect

    days = re.fullmatch(r"(\d+(?:\.\d+)?)d", older_than.strip())
    try:  # days here only: manifests keep their units (taskplane.durations)
        keep_ms = round(float(days[1]) * 86_400_000) if days else parse_duration_ms(older_than)
    except DurationError as error:
        fail(f"--older-than: {error} (or a number of days, e.g. 30d)")
    if keep_ms < 0:
        fail(f"--older-than: must not be negative, got {older_than!r}")
    cutoff = int(time.time() * 1000) - keep_ms
    try:
        with connect(database_url(), LIVE_SCHEMA) as conn:
            report = prune_finished_runs(conn, cutoff, batch_size)
    except psycopg.Error as error:  # an unreachable or unmigrated database
        fail(f"read model: {error}")
    if as_json:
        print_json({"runs": report.runs, "batches": report.batches, "finished_before_ms": cutoff})
    else:
        typer.echo(f"pruned {report.runs} finished runs (finished before {when(cutoff)}) in {report.batches} batches")


def register(app: typer.Typer) -> None:
    from taskplane.cli.submit import watch  # the log, not the read model: the client follows it

    runs_app.command("watch")(watch)
    app.add_typer(runs_app, name="runs")
