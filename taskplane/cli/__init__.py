"""The ``taskplane`` command: a registry of command groups, each in its own module.

A module is imported only when one of its commands runs (or its own help is asked
for): importing all of them (Kafka clients, psycopg, the simulator, the devstack)
cost every invocation about 0.2 s, ``--help`` included. ``COMMANDS`` names each
top-level command's module and the one-line help ``taskplane --help`` lists;
``tests/taskplane/test_cli_lazy.py`` checks both against the loaded commands.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from taskplane.contract.errors import TaskplaneError

# command -> (module under taskplane.cli whose ``register(app)`` adds it, its short help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "The whole pipeline: a batch of runs, a worker SIGKILLed mid-payment, a dead letter "
                     "fixed and replayed, and a summary. Exit 0 only if every run ended as expected."),
    "apply": ("apply", "Validate manifests and publish each AgentSystem to the compacted `systems` topic."),
    "submit": ("submit", "Submit one run of an applied system; prints the run id (with --wait: the result)."),
    "result": ("submit", "Wait for a run (submitted by anyone) and print its result; exit codes as submit --wait."),
    "replay": ("replay", "Reset a consumer group's offsets on TOPIC, printing old and new per partition."),
    "validate": ("systems", "Check a manifest and print what it defines; exit 2 with every problem if it is bad."),
    "ui": ("ui", "Serve the web console: overview, runs, DAGs, dead letters with replay, systems."),
    "simulate": ("simulate", "Run the system's real orchestrator and breaker deciders and its @agent/@tool code "
                             "in process over a simulated log, with seeded faults; check the invariants after "
                             "each seed."),
    "verify": ("verify", "Re-decide the recorded commands (with their recorded inputs) and diff the events: run "
                         "it against the live topics with the new version before an upgrade."),
    "dev": ("dev", "Run a local Kafka broker and Postgres for development."),
    "topics": ("processors", "The topic catalog."),
    "processor": ("processors", "Run stateful processors."),
    "runs": ("runs", "Runs and their task DAGs (list, show: the read model; watch: the log)."),
    "dlq": ("dlq", "Dead-lettered tasks: inspect and replay."),
    "approvals": ("approvals", "Approvals: tool calls waiting for a person (list, approve, deny)."),
    "rebuild": ("replay", "Rebuild derived state from the log."),
    "worker": ("worker", "Workers: run agents and their tools."),
    "schedules": ("schedules", "Cron schedules: list, pause, resume."),
}


def load(name: str) -> Any:
    """The real command ``name``: its module imported and registered on an app of its own."""
    module = importlib.import_module(f"taskplane.cli.{COMMANDS[name][0]}")
    own = typer.Typer()
    own.callback()(lambda: None)  # a callback keeps a one-command app a group
    module.register(own)
    group = typer.main.get_command(own)
    assert isinstance(group, TyperGroup)
    command = group.get_command(typer.Context(group), name)
    if command is None:
        raise LookupError(f"taskplane.cli.{COMMANDS[name][0]}.register does not add {name!r}")
    return command


class _Lazy(TyperGroup):
    """Lists ``COMMANDS`` from the table; builds a command when it is invoked."""

    _listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in COMMANDS:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # the overview: a stand-in with the table's help, nothing imported
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1])
        return load(cmd_name)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


app = typer.Typer(
    name="taskplane",
    cls=_Lazy,
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


def main() -> None:
    """The console script. A deliberate error (any ``TaskplaneError``) ends as one line
    and its ``exit_code`` (2 for user mistakes), never a traceback; so does an option
    click refuses (``--priority x``: a five-line box before)."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("Aborted!", err=True)
        raise SystemExit(1) from None
    except typer.TyperException as error:  # click's errors (typer vendors click: no public UsageError)
        ctx = getattr(error, "ctx", None)
        if getattr(error, "exit_code", 1) == 2 and ctx is not None and type(error).__name__ != "NoArgsIsHelpError":
            typer.echo(f"error: {error.format_message()} (see `{ctx.command_path} --help`)", err=True)  # type: ignore[attr-defined]
        else:
            _show(error)
        raise SystemExit(getattr(error, "exit_code", 1)) from None
    except TaskplaneError as error:
        hint = " (retrying may succeed)" if error.retryable else ""
        typer.echo(f"error: {error}{hint}", err=True)
        raise SystemExit(error.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)  # a typer.Exit's code, else 0


def _show(error: Any) -> None:
    """As typer shows it in standalone mode (the help of a bare group, for one)."""
    try:
        from typer import rich_utils
    except ImportError:  # typer without rich
        error.show()
    else:
        rich_utils.rich_format_error(error)
