"""The ``taskplane`` command: a registry of command groups, each in its own module."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

# Modules, not their functions: a command named like its module (apply, demo, replay,
# submit) must not shadow the submodule attribute of this package.
from taskplane.cli import (
    apply,
    demo,
    dev,
    dlq,
    processors,
    replay,
    runs,
    simulate,
    submit,
    systems,
    ui,
    verify,
    worker,
)
from taskplane.contract.errors import TaskplaneError

app = typer.Typer(
    name="taskplane",
    help="taskplane: a Kafka event-sourced orchestration plane for multi-agent systems.",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"taskplane {version('taskplane')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                               help="Print the installed version and exit.")] = False,
) -> None:
    """taskplane: a Kafka event-sourced orchestration plane for multi-agent systems."""


app.add_typer(dev.dev_app, name="dev")
app.command("demo")(demo.demo)
app.add_typer(processors.topics_app, name="topics")
app.add_typer(processors.processor_app, name="processor")
app.command("apply")(apply.apply)
app.command("submit")(submit.submit)
app.command("result")(submit.result)
runs.runs_app.command("watch")(submit.watch)
app.add_typer(runs.runs_app, name="runs")
app.add_typer(dlq.dlq_app, name="dlq")
app.command("replay")(replay.replay)
app.add_typer(replay.rebuild_app, name="rebuild")
worker.register(app)
systems.register(app)
ui.register(app)
simulate.register(app)
verify.register(app)

def main() -> None:
    """The console script. A deliberate error (any ``TaskplaneError``) ends as one line
    and its ``exit_code`` (2 for user mistakes), never a traceback."""
    try:
        app()
    except TaskplaneError as error:
        hint = " (retrying may succeed)" if error.retryable else ""
        typer.echo(f"error: {error}{hint}", err=True)
        raise SystemExit(error.exit_code) from None

