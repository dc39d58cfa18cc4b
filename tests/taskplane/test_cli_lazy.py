"""The command table in ``taskplane.cli`` against the commands its modules register:
``taskplane --help`` lists from the table without importing them."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

import taskplane.cli as cli
from taskplane.cli import main


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


@pytest.mark.parametrize(("argv", "says"), [
    (["submit", "--system", "s", "--priority", "x"],
     "error: Invalid value for '--priority': Input should be a valid integer, unable to parse string as an integer "
     "(see `taskplane submit --help`)"),
    (["submit", "--system", "s", "--prority", "3"],
     "error: No such option: --prority (Possible options: --priority) (see `taskplane submit --help`)"),
    (["schedules", "pause"], "error: Missing argument 'name'. (see `taskplane schedules pause --help`)"),
    (["bogus"], "error: No such command 'bogus'. (see `taskplane --help`)"),
])
def test_an_option_click_refuses_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str],
                                                        argv: list[str], says: str) -> None:
    # It was typer's five-line box ("Usage: ...", "Try ... --help", a framed message).
    monkeypatch.setattr(sys, "argv", ["taskplane", *argv])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err == says + "\n"


def test_the_console_script_exits_with_a_commands_code(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for argv, code in ((["--version"], 0), (["submit", "--help"], 0), ([], 2)):
        monkeypatch.setattr(sys, "argv", ["taskplane", *argv])
        with pytest.raises(SystemExit) as exited:
            main()
        assert exited.value.code == code, argv
    assert "Usage" in capsys.readouterr().out  # the bare command shows the help, as before
