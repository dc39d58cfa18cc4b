"""``taskplane dev up | status | down``: a local Kafka and Postgres in the background."""

from __future__ import annotations

import time

import typer

from taskplane.devstack import stack as devstack
from taskplane.devstack.kafka import LocalStackError, MissingToolError
from taskplane.streams.settings import StackSettings

dev_app = typer.Typer(help="Run a local Kafka broker and Postgres for development.")


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")

EXIT_MISSING_TOOL = 2


def _progress(line: str) -> None:
    typer.echo(line, err=True)


def _show(stack: devstack.DevStack) -> None:
    typer.echo(f"TASKPLANE_BOOTSTRAP_SERVERS={stack.bootstrap_servers}")
    typer.echo(f"TASKPLANE_DATABASE_URL={stack.database_url}")
    for process in stack.processes:
        typer.echo(f"# {process.name}: pid {process.pid}, data in {process.data_dir}")
    if stack.secure_dir:
        typer.echo(f"# secured: SASL/SCRAM over TLS; a role's settings: set -a; . {stack.secure_dir}/ROLE.env")
        typer.echo("#   ROLE: admin (topics, apply), orchestrator, breaker, cron, dispatcher, projector, worker, client, console")


@dev_app.command()
def up(
    brokers: int = typer.Option(
        1, "--brokers", min=1, max=5,
        help="Kafka nodes (KRaft, broker+controller each); 3 gives replication 3, min ISR 2",
    ),
    secure: bool = typer.Option(
        False, "--secure", help="SASL/SCRAM-SHA-512 over TLS, ACLs per role (docs/security.md)"
    ),
) -> None:
    """Start Kafka and Postgres detached; print their endpoints."""
    settings = StackSettings()
    started = time.monotonic()
    try:
        stack, started_now = devstack.up(settings, progress=_progress, brokers=brokers, secure=secure)
    except MissingToolError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_MISSING_TOOL) from None
    except LocalStackError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if started_now:
        typer.echo(f"# dev stack started in {time.monotonic() - started:.1f}s", err=True)
    else:
        typer.echo("# dev stack already running", err=True)
    _show(stack)


@dev_app.command()
def status() -> None:
    """Show the running dev stack; exit 1 when none runs."""
    settings = StackSettings()
    stack = devstack.read_state(settings)
    if stack is None:
        typer.echo("no dev stack (run `taskplane dev up`)")
        raise typer.Exit(1)
    for process in stack.processes:
        state = "running" if process.alive() else "NOT running"
        typer.echo(f"# {process.name}: {state} (pid {process.pid})")
    _show(stack)
    if not stack.running():
        raise typer.Exit(1)


@dev_app.command()
def down() -> None:
    """Stop every process `dev up` started."""
    stopped = devstack.down(StackSettings())
    typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
