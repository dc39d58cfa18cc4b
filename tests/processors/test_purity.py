"""Deciders import no Kafka, no Avro, no database, no clock, no randomness, no OS."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROCESSORS = Path(__file__).resolve().parents[2] / "processors"
FORBIDDEN = {"streams", "confluent_kafka", "fastavro", "psycopg", "time", "random", "datetime", "os",
             "socket", "logging"}
WIRING = {"wiring.py", "app.py", "main.py"}


def decider_modules() -> list[Path]:
    return sorted(path for path in PROCESSORS.rglob("*.py")
                  if "projector" not in path.relative_to(PROCESSORS).parts and path.name not in WIRING)


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_walk_finds_the_deciders() -> None:
    names = {str(p.relative_to(PROCESSORS)) for p in decider_modules()}
    assert {"decider.py", "orchestrator/decider.py", "breaker/decider.py"} <= names


@pytest.mark.parametrize("path", decider_modules(), ids=lambda p: str(p.relative_to(PROCESSORS)))
def test_decider_module_is_pure(path: Path) -> None:
    assert not imported_roots(path) & FORBIDDEN


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os.path\nfrom time import monotonic\n")
    assert imported_roots(module) & FORBIDDEN == {"os", "time"}
