"""The command table in ``taskplane.cli`` against the commands its modules register:
``taskplane --help`` lists from the table without importing them."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

import taskplane.cli as cli


def _first_paragraph(text: str | None) -> str:
    return " ".join((text or "").split("\n\n")[0].split())


def test_each_listed_help_is_the_commands_own() -> None:
    for name, (_module, listed) in cli.COMMANDS.items():
        assert _first_paragraph(cli.load(name).help) == _first_paragraph(listed), name


def test_every_registered_command_is_in_the_table() -> None:
    for info in pkgutil.iter_modules(cli.__path__):
        if info.name == "__main__":  # running it is the command itself
            continue
        module = __import__(f"taskplane.cli.{info.name}", fromlist=["register"])
        if not hasattr(module, "register"):
            continue
        own = typer.Typer()
        own.callback()(lambda: None)
        module.register(own)
        group = typer.main.get_command(own)
        assert isinstance(group, TyperGroup)
        for name in group.list_commands(typer.Context(group)):
            assert cli.COMMANDS.get(name, ("",))[0] == info.name, f"{info.name} registers {name!r}"


def test_help_lists_every_command_and_imports_none() -> None:
    result = CliRunner().invoke(cli.app, ["--help"])
    assert result.exit_code == 0
    for name in cli.COMMANDS:
        assert f" {name} " in result.output
    probe = ("import sys; from typer.testing import CliRunner; import taskplane.cli as c; "
             "CliRunner().invoke(c.app, ['--help']); "
             "print(sorted(m for m in sys.modules if m.startswith('taskplane.cli.') "
             "or m in ('confluent_kafka', 'psycopg')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
