"""``taskplane validate -f FILE``: check an AgentSystem manifest without a broker.

The summary it prints is ``taskplane.plan_summary`` (shared with ``apply`` and the console).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from taskplane.exceptions import ManifestError, UserInputError
from taskplane.manifest import load_manifest
from taskplane.plan_summary import plan_summary, render_plan_summary


def register(app: typer.Typer) -> None:
    """Add the system commands to the ``taskplane`` app."""
    app.command("validate")(validate)


def validate(
    file: Annotated[Path, typer.Option("--file", "-f", help="AgentSystem manifest (YAML).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check a manifest and print what it defines; exit 2 with every problem if it is bad."""
    try:
        manifest = load_manifest(file)
    except ManifestError as error:
        for line in error.lines():
            typer.echo(line, err=True)
        count = len(error.problems)
        typer.echo(f"{file}: refused ({count} problem{'s' if count > 1 else ''})", err=True)
        if as_json:
            problems = [{"path": p.path, "reason": p.reason} for p in error.problems]
            typer.echo(json.dumps({"valid": False, "problems": problems}, indent=2))
        raise typer.Exit(error.exit_code) from None
    except UserInputError as error:
        typer.echo(f"error: --file: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    if as_json:
        typer.echo(json.dumps({"valid": True, **plan_summary(manifest)}, indent=2))
    else:
        typer.echo(render_plan_summary(manifest))
