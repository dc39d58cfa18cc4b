"""``taskplane demo``: registered by cli.py; the demo itself is ``taskplane.demo``."""

from __future__ import annotations

from typing import Annotated

import typer

from taskplane.devstack.kafka import LocalStackError, MissingToolError


def demo(
    runs: Annotated[int, typer.Option(min=1, help="Runs per system in the batch.")] = 20,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every run to finish.")] = 150.0,
) -> None:
    """The whole pipeline: a batch of runs, a worker SIGKILLed mid-payment, a dead letter
    fixed and replayed, and a summary. Exit 0 only if every run ended as expected."""
    from taskplane.demo.run import run_demo

    try:
        report = run_demo(runs_per_system=runs, timeout_s=timeout)
    except MissingToolError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except LocalStackError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    if not report.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
