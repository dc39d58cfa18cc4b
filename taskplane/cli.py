"""The ``taskplane`` command: a registry of command groups, each in its own module."""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from taskplane import cli_simulate, cli_systems, cli_ui, cli_worker
from taskplane.cli_apply import apply
from taskplane.cli_demo import demo
from taskplane.cli_dev import dev_app
from taskplane.cli_dlq import dlq_app
from taskplane.cli_processors import processor_app, topics_app
from taskplane.cli_replay import rebuild_app, replay
from taskplane.cli_runs import runs_app
from taskplane.cli_submit import result, submit, watch
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


app.add_typer(dev_app, name="dev")
app.command("demo")(demo)
app.add_typer(topics_app, name="topics")
app.add_typer(processor_app, name="processor")
app.command("apply")(apply)
app.command("submit")(submit)
app.command("result")(result)
runs_app.command("watch")(watch)
app.add_typer(runs_app, name="runs")
app.add_typer(dlq_app, name="dlq")
app.command("replay")(replay)
app.add_typer(rebuild_app, name="rebuild")
cli_worker.register(app)
cli_systems.register(app)
cli_ui.register(app)
cli_simulate.register(app)


def main() -> None:
    """The console script. A deliberate error (any ``TaskplaneError``) ends as one line
    and its ``exit_code`` (2 for user mistakes), never a traceback."""
    try:
        app()
    except TaskplaneError as error:
        hint = " (retrying may succeed)" if error.retryable else ""
        typer.echo(f"error: {error}{hint}", err=True)
        raise SystemExit(error.exit_code) from None


if __name__ == "__main__":
    main()
