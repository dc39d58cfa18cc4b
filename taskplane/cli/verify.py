"""``taskplane verify``: re-decide a recorded log with this version's orchestrator and
compare the events (docs/verify.md).

    taskplane verify                                  # the cluster of TASKPLANE_* (or `dev up`)
    taskplane verify --system payment-processor       # that system's runs only
    taskplane verify tests/fixtures/logs/             # fixture logs (a file or a directory)

Exit 0 when every decision is the same, 1 when one is not (the first is printed: the
command, the recorded event and the re-decided one), 2 on bad input.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from taskplane.contract.replay import Divergence


def verify(
    path: Annotated[Path | None, typer.Argument(help="A fixture log file or directory (default: the cluster).",
                                                show_default=False)] = None,
    system: Annotated[str | None, typer.Option(help="Only this system's runs.")] = None,
    prefix: Annotated[str | None, typer.Option(help="Topic prefix (default: TASKPLANE_TOPIC_PREFIX).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for CI.")] = False,
    processor: Annotated[str, typer.Option(help="Whose log: orchestrator, or dispatcher (dispatch, "
                                                "dispatch-events; a system is one key).")] = "orchestrator",
) -> None:
    """Re-decide the recorded commands (with their recorded inputs) and diff the events:
    run it against the live topics with the new version before an upgrade."""
    from taskplane.processors.orchestrator.verify import (
        BadLog,
        read_cluster,
        read_fixtures,
        verify_log,
    )

    if system is not None and not system.strip():
        _fail("--system: give a system name")
    if processor not in ("orchestrator", "dispatcher"):
        _fail(f"--processor: {processor!r} is not one of orchestrator, dispatcher")
    dispatcher = processor == "dispatcher"
    if path is not None:
        try:
            logs = [(str(name), log) for name, log in read_fixtures(path)]
        except BadLog as error:
            _fail(str(error))
    else:
        from taskplane.cli.processors import kafka_endpoints
        from taskplane.streams.topics import Topics

        kafka, topics = kafka_endpoints()
        if prefix is not None:
            topics = Topics(prefix)
        roles = ("dispatch", "dispatch-events") if dispatcher else ("commands", "events")
        typer.echo(f"reading {topics.name(roles[0])} and {topics.name(roles[1])} ...", err=True)
        logs = [(f"{topics.prefix} topics", read_cluster(kafka, topics, roles))]
    results = []
    for name, log in logs:
        if not any(record.topic == "commands" for record in log.records):
            _fail(f"{name}: no commands to re-decide")
        if dispatcher:
            from taskplane.processors.dispatch.verify import verify_dispatch

            results.append((name, verify_dispatch(log, system=system, progress=_Progress(name))))
        else:
            results.append((name, verify_log(log, system=system, progress=_Progress(name))))
    diverged = [(name, d) for name, verdict in results for d in verdict.divergences]
    summary = {
        "logs": len(results),
        "commands": sum(v.total("commands") for _, v in results),
        "decisions": sum(v.total("decisions") for _, v in results),
        "events": sum(v.total("events") for _, v in results),
        "runs": sum(v.total("keys") for _, v in results),
        "skipped_runs": sum(v.total("skipped_keys") for _, v in results),
        "undecodable_commands": sum(v.undecodable for _, v in results),
        "diverged_runs": len(diverged),
    }
    first = next(((name, v.first) for name, v in results if v.first is not None), None)
    if as_json:
        typer.echo(json.dumps({**summary, "first_divergence": None if first is None else
                               {"log": first[0], **_divergence(first[1])}}, default=str))
    else:
        if first is not None:
            typer.echo(_describe(*first))
        typer.echo(f"{'DIVERGED' if first else 'same'}: {summary['decisions']:,} decisions of "
                   f"{summary['commands']:,} commands over {summary['runs']:,} runs re-decided, "
                   f"{summary['diverged_runs']:,} diverged"
                   + (f"; {summary['skipped_runs']:,} runs skipped (their first commands are past the "
                      "topic's retention)" if summary["skipped_runs"] else ""))
    if first is not None:
        raise typer.Exit(1)


class _Progress:
    """A line on stderr at most every two seconds, for long logs."""

    def __init__(self, name: str) -> None:
        self.name, self.last = name, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= 2.0 and total:
            self.last = now
            typer.echo(f"{self.name}: {done:,}/{total:,} commands re-decided ({100 * done // total} %)", err=True)


def _describe(name: str, divergence: Divergence) -> str:
    d = _divergence(divergence)
    lines = [f"{name}: first divergence, run {divergence.key!r}, commands partition {divergence.partition}"
             + (f" offset {d['offset']}" if d["offset"] is not None else ""),
             f"  command:  {d['command']}",
             f"  input:    {d['given']}",
             f"  event {divergence.index}:",
             f"    expected (recorded):   {d['expected']}",
             f"    actual (re-decided):   {d['actual']}"]
    return "\n".join(lines)


def _divergence(divergence: Divergence) -> dict[str, Any]:
    logged = divergence.command
    return {
        "run": divergence.key,
        "partition": divergence.partition,
        "offset": None if logged is None else logged.offset,
        "command": "(not in the log)" if logged is None else repr(logged.command),
        "given": repr(divergence.given),
        "index": divergence.index,
        "expected": "(none)" if divergence.expected is None else repr(divergence.expected),
        "actual": "(none)" if divergence.actual is None else repr(divergence.actual),
    }


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
