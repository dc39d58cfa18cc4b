"""``taskplane submit``, ``taskplane result RUN`` and ``taskplane runs watch RUN``: the
client's commands (``taskplane.client``), reading results from the log.

    taskplane submit --system document-pipeline --input '{"folder": "docs"}' --wait --timeout 60

Exit codes of a wait: 0 the run succeeded (its result JSON on stdout), 1 it failed,
was cancelled or a task was dead-lettered (the failure as JSON on stdout), 124 the
timeout passed first, 2 bad input (one line; nothing written to Kafka).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from typing import Annotated, Any, NoReturn

import typer

from taskplane.client.client import Client, RunHandle
from taskplane.client.run_input import decode_input
from taskplane.contract.errors import TaskplaneError
from taskplane.contract.scheduling import priority_problem, tenant_problem
from taskplane.exceptions import RunFailed, RunTimeout, UserInputError

EXIT_FAILED, EXIT_TIMEOUT = 1, 124
# The option or argument a UserInputError's field came from, for the one-line message.
_FIELD_NAMES = {"system": "--system", "input": "--input", "run": "RUN", "task": "--task"}
TimeoutOption = Annotated[float | None, typer.Option(min=0, help="Seconds to wait (default: until it ends).")]


def submit(
    system: Annotated[str, typer.Option(help="Name of an applied AgentSystem.")],
    run_input: Annotated[str, typer.Option("--input", help="Run input as JSON.")] = "{}",
    idempotency_key: Annotated[str | None, typer.Option(help="Same key, same run.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run and print its result.")] = False,
    timeout: TimeoutOption = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant whose fair share the run takes.")] = None,
    priority: Annotated[int | None, typer.Option(help="1..5, 5 first within the tenant's share.")] = None,
) -> None:
    """Submit one run of an applied system; prints the run id (with --wait: the result)."""
    value = _parse_input(run_input)
    if tenant is not None and (problem := tenant_problem(tenant, given=True)) is not None:
        _bad(f"--tenant: {problem}")
    if priority is not None and (problem := priority_problem(priority)) is not None:
        _bad(f"--priority: {problem}")
    with _client() as client:
        handle = _answer(lambda: client.submit(system, value, idempotency_key, tenant=tenant, priority=priority))
        if not wait:
            typer.echo(handle.run_id)
            return
        typer.echo(f"run {handle.run_id}", err=True)
        _print_outcome(handle, timeout)


def result(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id.")],
    timeout: TimeoutOption = None,
) -> None:
    """Wait for a run (submitted by anyone) and print its result; exit codes as submit --wait."""
    with _client() as client:
        _print_outcome(_answer(lambda: client.run(run_id)), timeout)


def watch(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="Run id.")],
    timeout: TimeoutOption = None,
) -> None:
    """Follow a run live: one line per event until it ends (from the log, no read model)."""
    with _client() as client:
        handle = _answer(lambda: client.run(run_id))
        try:
            for event in handle.events(timeout):
                typer.echo(describe(event))
        except RunTimeout as error:
            typer.echo(f"timeout: {error}", err=True)
            raise typer.Exit(EXIT_TIMEOUT) from None
        except TaskplaneError as error:
            _fail(error)
        status = handle.status().status
    if status != "succeeded":
        raise typer.Exit(EXIT_FAILED)


def describe(event: Any) -> str:
    """One line for an event: its type and its fields, long values cut."""
    parts = [type(event).__name__]
    if is_dataclass(event):
        for field in fields(event):
            if field.name in ("run_id", "plan"):
                continue
            value = getattr(event, field.name)
            if value is None:
                continue
            text = value.value if hasattr(value, "value") else str(value)
            parts.append(f"{field.name}={text if len(text) <= 80 else text[:77] + '...'}")
    return f"{time.strftime('%H:%M:%S')} " + " ".join(parts)


# ------------------------------------------------------------ shared


def _parse_input(text: str) -> Any:
    try:
        return decode_input(text)
    except UserInputError as error:
        _bad(f"--input: {error}")


@contextmanager
def _client() -> Iterator[Client]:
    try:
        client = Client()
    except TaskplaneError as error:
        _fail(error)
    try:
        yield client
    finally:
        client.close()


def _answer(call: Any) -> RunHandle:
    try:
        handle: RunHandle = call()
    except TaskplaneError as error:
        _fail(error)
    return handle


def _print_outcome(handle: RunHandle, timeout: float | None) -> None:
    try:
        outputs = handle.result(timeout)
    except RunTimeout as error:
        typer.echo(f"timeout: {error}", err=True)
        raise typer.Exit(EXIT_TIMEOUT) from None
    except RunFailed as failure:
        typer.echo(json.dumps({"run_id": failure.run_id, "status": failure.status, "reason": failure.reason,
                               "task": failure.task, "error": failure.error, "attempts": failure.attempts},
                              indent=2))
        typer.echo(f"error: {failure}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    except TaskplaneError as error:
        _fail(error)
    typer.echo(json.dumps(outputs, indent=2, sort_keys=True))


def _fail(error: TaskplaneError) -> NoReturn:
    if isinstance(error, UserInputError) and error.field:
        _bad(f"{_FIELD_NAMES.get(error.field, error.field)}: {error}", error.exit_code)
    _bad(str(error), error.exit_code)


def _bad(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("submit")(submit)
    app.command("result")(result)
