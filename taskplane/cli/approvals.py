"""``taskplane approvals list|approve|deny``: a person decides what an agent may do.

    taskplane approvals list
    taskplane approvals approve 3f2a9c... --as ada --reason "invoice checked"
    taskplane approvals deny 3f2a9c... --reason "wrong customer"

Decisions are signed with TASKPLANE_APPROVAL_KEY (people hold it, workers never do);
the orchestrator checks the signature and records who decided, when and why. Reads the
``events`` topic, so it works without the projector. docs/governance.md, "Approvals".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer

from taskplane.cli.runs import JsonOption, fail, print_json, table, when
from taskplane.contract.errors import TaskplaneError

if TYPE_CHECKING:
    from taskplane.client import Client
    from taskplane.client._approvals import ApprovalInfo

approvals_app = typer.Typer(help="Approvals: tool calls waiting for a person (list, approve, deny).", no_args_is_help=True)
STATUSES = ("pending", "granted", "denied", "expired", "closed", "all")
AsOption = Annotated[str | None, typer.Option("--as", help="Who decides (default: the login user).")]
TimeoutOption = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the orchestrator's answer.")]


@contextmanager
def _client() -> Iterator[Client]:
    from taskplane.client import Client

    try:
        client = Client()
    except TaskplaneError as error:
        fail(str(error))
    try:
        yield client
    except TaskplaneError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(getattr(error, "exit_code", 1)) from None
    finally:
        client.close()


def _age(info: ApprovalInfo, now_ms: int) -> str:
    seconds = info.age_ms(now_ms) // 1000
    return f"{seconds // 60}m{seconds % 60:02d}s"


@approvals_app.command("list")
def approvals_list(
    status: Annotated[str, typer.Option(help=f"One of {', '.join(STATUSES)}.")] = "pending",
    as_json: JsonOption = False,
) -> None:
    """Approvals, oldest request first: the call, its input, how long it has waited."""
    if status not in STATUSES:
        fail(f"--status: unknown status {status!r} (one of {', '.join(STATUSES)})")
    with _client() as client:
        found = client.approvals(None if status == "all" else status)
    if as_json:
        print_json([asdict(info) for info in found])
        return
    now = int(time.time() * 1000)
    table(f"{status} approvals", ["id", "run", "task", "tool", "input", "age", "expires", "status", "decided by"],
          [[a.approval_id, a.run_id[:12], a.task, a.tool, a.input_preview[:60], _age(a, now), when(a.expires_ms),
            a.status, a.who] for a in found])


@approvals_app.command("approve")
def approvals_approve(
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="The approval's id (approvals list).")],
    who: AsOption = None,
    reason: Annotated[str, typer.Option(help="Why (recorded with the decision).")] = "",
    run: Annotated[str | None, typer.Option(help="The run it belongs to (skips looking it up).")] = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Grant it: the task resumes and the tool call runs once."""
    with _client() as client:
        info = client.approve(approval_id, who=who, reason=reason, run_id=run, timeout=timeout)
    _said(info)


@approvals_app.command("deny")
def approvals_deny(
    approval_id: Annotated[str, typer.Argument(metavar="ID", help="The approval's id (approvals list).")],
    reason: Annotated[str, typer.Option(help="Why (required; recorded with the decision).")],
    who: AsOption = None,
    run: Annotated[str | None, typer.Option(help="The run it belongs to (skips looking it up).")] = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Deny it: the task fails approval_denied (no retry)."""
    with _client() as client:
        info = client.deny(approval_id, reason, who=who, run_id=run, timeout=timeout)
    _said(info)


def _said(info: ApprovalInfo) -> None:
    typer.echo(f"{info.approval_id}: {info.status} by {info.who} at {when(info.decided_ms)} "
               f"({info.tool} of {info.run_id}/{info.task})")
    if info.status == "expired":
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(approvals_app, name="approvals")
