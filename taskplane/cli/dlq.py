"""``taskplane dlq list|show|replay``: dead-lettered tasks and their replay.

    taskplane dlq replay --all --error-contains "HTTP 500" --dry-run

Reads the read model; writes only ``ReplayTask`` commands. The orchestrator resumes
the task (its succeeded tool calls stay done) and unblocks its downstream.
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from taskplane.cli.runs import JsonOption, fail, print_json, read_model, table, when

dlq_app = typer.Typer(help="Dead-lettered tasks: inspect and replay.", no_args_is_help=True)


def split_task(value: str) -> tuple[str, str]:
    run_id, _, task = value.partition("/")
    if not run_id or not task:
        fail(f"TASK: expected RUN/TASK (e.g. 3f2a.../summarizer), got {value!r}")
    return run_id, task


@dlq_app.command("list")
def dlq_list(
    system: Annotated[str | None, typer.Option(help="Only this AgentSystem.")] = None,
    error_contains: Annotated[str | None, typer.Option(help="Only errors containing TEXT (any case).")] = None,
    include_replayed: Annotated[bool, typer.Option("--all", help="Also those already replayed.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Open dead letters, oldest first, with how many downstream tasks each blocks."""
    with read_model() as model:
        rows = model.dead_letters(system, error_contains, include_replayed)
    if as_json:
        print_json(rows)
        return
    table("dead letters", ["task", "system", "status", "attempts", "blocks", "since", "error"], [
        [f"{r['run_id']}/{r['task']}", r["system"], r["status"], r["attempts"], r["blocked"],
         when(r["dead_lettered_ms"]), r["error"]] for r in rows])


@dlq_app.command("show")
def dlq_show(
    task: Annotated[str, typer.Argument(metavar="TASK", help="RUN/TASK")],
    as_json: JsonOption = False,
) -> None:
    """One dead letter: the error, every attempt and the tool journal kept for the replay."""
    run_id, name = split_task(task)
    with read_model() as model:
        letter = model.dead_letter(run_id, name)
        attempts, calls = model.attempts(run_id, name), model.tool_calls(run_id, name)
        blocked = [t["task"] for t in model.tasks(run_id) if t["blocked_by"] == name and t["status"] == "blocked"]
    if as_json:
        print_json({"dead_letter": letter, "attempts": attempts, "tool_calls": calls, "blocks": blocked})
        return
    typer.echo(f"{run_id}/{name} ({letter['system']}): {letter['status']} after {letter['attempts']} attempts, "
               f"dead-lettered {when(letter['dead_lettered_ms'])}")
    typer.echo(f"error: {letter['error']}")
    if blocked:
        typer.echo(f"blocks: {', '.join(blocked)}")
    table("attempts", ["attempt", "epoch", "worker", "status", "kind", "error"],
          [[a["attempt"], a["epoch"], a["worker_id"], a["status"], a["kind"], a["error"]] for a in attempts])
    table("tool journal (succeeded calls are not run again)", ["#", "tool", "epoch", "ok", "result / error", "key"],
          [[c["call_index"], c["tool"], c["epoch"], c["ok"], c["result"] if c["ok"] else c["error"], c["key"]]
           for c in calls])


@dlq_app.command("replay")
def dlq_replay(
    task: Annotated[str | None, typer.Argument(metavar="[TASK]", help="RUN/TASK; or use --all.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every open dead letter matching the filters.")] = False,
    system: Annotated[str | None, typer.Option(help="With --all: only this AgentSystem.")] = None,
    error_contains: Annotated[str | None, typer.Option(help="With --all: only errors containing TEXT.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be replayed.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Publish ReplayTask for one dead letter, or for all that match."""
    if (task is None) == (not replay_all):
        fail("give either TASK (RUN/TASK) or --all")
    if task is not None and (system or error_contains):
        fail("--system and --error-contains filter --all; with TASK they mean nothing")
    with read_model() as model:
        if task is not None:
            run_id, name = split_task(task)
            letter = model.dead_letter(run_id, name)
            if letter["status"] != "open":
                fail(f"TASK: {task} was already replayed ({when(letter['replayed_ms'])} by {letter['replayed_by']})")
            targets = [(run_id, name)]
        else:
            targets = [(r["run_id"], r["task"]) for r in model.dead_letters(system, error_contains)]
    if not dry_run and targets:
        from taskplane.cli.processors import kafka_endpoints
        from taskplane.contract.messages import ReplayTask
        from taskplane.streams.publisher import Publisher

        kafka, topics = kafka_endpoints()
        who = getpass.getuser()
        with Publisher(kafka, topics) as publisher:
            for run_id, name in targets:
                publisher.publish(ReplayTask(run_id, name, requested_by=who))
    if as_json:
        print_json({"dry_run": dry_run, "replayed": [f"{r}/{t}" for r, t in targets]})
        return
    verb = "would replay" if dry_run else "replayed"
    for run_id, name in targets:
        typer.echo(f"{verb} {run_id}/{name}")
    typer.echo(f"{len(targets)} task(s) {verb.split()[-1]}{' (dry run)' if dry_run else ''}")


def register(app: typer.Typer) -> None:
    app.add_typer(dlq_app, name="dlq")
