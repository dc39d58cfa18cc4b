"""``taskplane verify``: re-decide a recorded log with this version's deciders and
compare the events, and a processor's changelog with the fold of its events (docs/verify.md).

    taskplane verify                                  # the cluster of TASKPLANE_* (or `dev up`)
    taskplane verify --system payment-processor       # that system's runs only
    taskplane verify tests/fixtures/logs/             # fixture logs (a file or a directory)
    taskplane verify --processor cron                 # dispatcher, cron, breaker: their own topics

Exit 0 when every decision and state is the same, 1 when one is not (the first is
printed: the key, the command and its log time, the recorded event and the re-decided
one), 2 on bad input.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from taskplane.contract.replay import Divergence

if TYPE_CHECKING:
    from taskplane.processors.recorded import StateMismatch, Verdict


def verify(
    path: Annotated[Path | None, typer.Argument(help="A fixture log file or directory (default: the cluster).",
                                                show_default=False)] = None,
    system: Annotated[str | None, typer.Option(help="Only this system's runs (or keys).")] = None,
    prefix: Annotated[str | None, typer.Option(help="Topic prefix (default: TASKPLANE_TOPIC_PREFIX).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, for CI.")] = False,
    processor: Annotated[str, typer.Option(help="Whose log: orchestrator, dispatcher, cron or breaker "
                                                "(docs/verify.md).")] = "orchestrator",
) -> None:
    """Re-decide the recorded commands (with their recorded inputs) and diff the events:
    run it against the live topics with the new version before an upgrade."""
    from taskplane.processors.recorded import BadLog, read_cluster, read_fixtures
    from taskplane.processors.verifying import PROCESSORS, verifiable, verify_processor

    if system is not None and not system.strip():
        _fail("--system: give a system name")
    if processor not in PROCESSORS:
        _fail(f"--processor: {processor!r} is not one of {', '.join(PROCESSORS)}")
    spec = verifiable(processor)
    if system is not None and spec.select is None:
        _fail(f"--system: the {spec.name}'s log is keyed by {spec.noun}, not by system")
    try:
        if path is not None:
            logs = [(str(name), log) for name, log in read_fixtures(path)]
        else:
            from taskplane.cli.processors import kafka_endpoints
            from taskplane.streams.topics import Topics

            kafka, topics = kafka_endpoints()
            if prefix is not None:
                topics = Topics(prefix)
            typer.echo(f"reading {', '.join(topics.name(role) for role in spec.roles)} ...", err=True)
            logs = [(f"{topics.prefix} topics", read_cluster(kafka, topics, spec.roles))]
        results = []
        for name, log in logs:
            if not any(record.topic == "commands" for record in log.records):
                _fail(f"{name}: no commands to re-decide")
            results.append((name, verify_processor(spec, log, system=system, progress=_Progress(name))))
    except BadLog as error:
        _fail(str(error))
    summary = _summary(spec.name, results)
    if system is not None and not summary["keys"] and not summary["skipped_runs"]:
        # Nothing verified is not "same": a misspelt system in a CI gate passed every time.
        _fail(f"--system: nothing of system {system!r} in the log to verify")
    first = next(((name, v.first) for name, v in results if v.first is not None), None)
    mismatch = next(((name, v.state_mismatches[0]) for name, v in results if v.state_mismatches), None)
    if as_json:
        typer.echo(json.dumps({**summary,
                               "first_divergence": None if first is None else {"log": first[0], **_divergence(first[1])},
                               "first_state_mismatch": None if mismatch is None else
                               {"log": mismatch[0], **_mismatch(mismatch[1])}}, default=str))
    else:
        if first is not None:
            typer.echo(_describe(spec.noun, spec.roles[0], *first))
        if mismatch is not None:
            typer.echo(_describe_mismatch(spec.noun, *mismatch))
        typer.echo(_line(spec.noun, summary, failed=first is not None or mismatch is not None))
    if first is not None or mismatch is not None:
        raise typer.Exit(1)


def _summary(processor: str, results: list[tuple[str, Verdict]]) -> dict[str, Any]:
    diverged = sum(len(v.divergences) for _, v in results)
    keys = sum(v.total("keys") for _, v in results)
    return {
        "processor": processor,
        "logs": len(results),
        "commands": sum(v.total("commands") for _, v in results),
        "decisions": sum(v.total("decisions") for _, v in results),
        "events": sum(v.total("events") for _, v in results),
        "runs": keys,  # the keys of the log (runs of the orchestrator); kept under its first name
        "keys": keys,
        "skipped_runs": sum(v.total("skipped_keys") for _, v in results),
        "undecodable_commands": sum(v.undecodable for _, v in results),
        "diverged_runs": diverged,
        "diverged_keys": diverged,
        "same_keys": keys - diverged,
        "states_compared": sum(v.states_compared for _, v in results),
        "states_skipped": sum(v.states_skipped for _, v in results),
        "state_mismatches": sum(len(v.state_mismatches) for _, v in results),
    }


def _line(noun: str, summary: dict[str, Any], *, failed: bool) -> str:
    line = (f"{'DIVERGED' if failed else 'same'}: {summary['decisions']:,} decisions of {summary['commands']:,} "
            f"commands over {summary['keys']:,} {noun}s re-decided, {summary['same_keys']:,} same, "
            f"{summary['diverged_keys']:,} diverged")
    if summary["skipped_runs"]:
        line += f"; {summary['skipped_runs']:,} {noun}s skipped (their first commands are past the topic's retention)"
    if summary["states_compared"] or summary["state_mismatches"]:
        line += (f"; changelog: {summary['states_compared']:,} {noun} states compared with the fold of their "
                 f"events, {summary['state_mismatches']:,} differ")
    return line


class _Progress:
    """A line on stderr at most every two seconds, for long logs."""

    def __init__(self, name: str) -> None:
        self.name, self.last = name, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last >= 2.0 and total:
            self.last = now
            typer.echo(f"{self.name}: {done:,}/{total:,} commands re-decided ({100 * done // total} %)", err=True)


def _describe(noun: str, topic: str, name: str, divergence: Divergence) -> str:
    d = _divergence(divergence)
    where = f"{topic} partition {divergence.partition}" + (f" offset {d['offset']}" if d["offset"] is not None else "")
    if d["at_ms"] is not None:
        where += f", log time {_iso(d['at_ms'])} ({d['at_ms']} ms)"
    lines = [f"{name}: first divergence, {noun} {divergence.key!r}, {where}",
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
        "key": divergence.key,
        "partition": divergence.partition,
        "offset": None if logged is None else logged.offset,
        "at_ms": None if logged is None else logged.at_ms,
        "command": "(not in the log)" if logged is None else repr(logged.command),
        "given": repr(divergence.given),
        "index": divergence.index,
        "expected": "(none)" if divergence.expected is None else repr(divergence.expected),
        "actual": "(none)" if divergence.actual is None else repr(divergence.actual),
    }


def _describe_mismatch(noun: str, name: str, mismatch: StateMismatch) -> str:
    m = _mismatch(mismatch)
    return "\n".join([f"{name}: changelog state differs from the fold of the events, {noun} {mismatch.key!r}, "
                      f"changelog partition {mismatch.partition}",
                      f"    changelog:   {m['stored']}",
                      f"    folded:      {m['folded']}"])


def _mismatch(mismatch: StateMismatch) -> dict[str, Any]:
    return {"key": mismatch.key, "partition": mismatch.partition,
            "stored": "(none)" if mismatch.stored is None else repr(mismatch.stored),
            "folded": "(none)" if mismatch.folded is None else repr(mismatch.folded)}


def _iso(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("verify")(verify)
