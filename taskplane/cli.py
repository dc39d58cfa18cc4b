"""The ``taskplane`` command: a registry of command groups, each in its own module."""

from __future__ import annotations

import typer

from taskplane import cli_worker
from taskplane.cli_demo import demo
from taskplane.cli_dev import dev_app
from taskplane.cli_processors import apply, processor_app, submit, topics_app

app = typer.Typer(
    name="taskplane",
    help="taskplane: a Kafka event-sourced orchestration plane for multi-agent systems.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(dev_app, name="dev")
app.command("demo")(demo)
app.add_typer(topics_app, name="topics")
app.add_typer(processor_app, name="processor")
app.command("apply")(apply)
app.command("submit")(submit)
cli_worker.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
