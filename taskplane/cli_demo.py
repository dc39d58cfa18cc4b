"""``taskplane demo``: registered by cli.py. Swap the implementation here."""

from __future__ import annotations

import typer

from streams.local_broker import LocalStackError, MissingToolError
from taskplane.demo_smoke import run_smoke


def demo() -> None:
    """Round trip through the real broker and Postgres (a smoke demo for now)."""
    try:
        run_smoke(echo=typer.echo)
    except MissingToolError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    except LocalStackError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
