"""Deciders and the contract import no Kafka, no Avro, no database, no clock, no
randomness, no OS, and nothing of the layers above them (import-linter holds the
layers too; this also covers the standard library)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"taskplane.streams", "taskplane.workers", "taskplane.devstack", "confluent_kafka", "fastavro",
             "psycopg", "time", "random", "datetime", "os", "socket", "logging", "uuid"}
WIRING = {"app.py", "rebuild.py", "verify.py", "export.py"}  # a processor's wiring to the log runtime or an exporter, above the deciders
# The verify machinery every processor's verify.py shares (reads the topics, runs the replay).
WIRING |= {"recorded.py", "verifying.py"}
# The cron calendar reads the tz database (datetime, zoneinfo): the cron wiring's hints
# ask it, and the decider records its answers (SlotsDue), so it is an input, not a decider.
INPUT_SOURCES = {"processors/cron/calendar.py"}


def decider_modules() -> list[Path]:
    processors = (path for path in (ROOT / "processors").rglob("*.py")
                  if "projector" not in path.relative_to(ROOT).parts and path.name not in WIRING
                  and str(path.relative_to(ROOT)) not in INPUT_SOURCES)
    return sorted([*processors, *(ROOT / "contract").rglob("*.py")])


def imported(path: Path) -> set[str]:
    """Each imported module and every package above it (``a.b.c`` gives a, a.b, a.b.c)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            names.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    return names


def test_the_walk_finds_the_deciders_and_the_contract() -> None:
    names = {str(p.relative_to(ROOT)) for p in decider_modules()}
    assert {"contract/decider.py", "processors/orchestrator/decider.py", "processors/breaker/decider.py",
            "processors/cron/decider.py", "contract/cron.py"} <= names


@pytest.mark.parametrize("path", decider_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_decider_module_is_pure(path: Path) -> None:
    assert not imported(path) & FORBIDDEN


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import os.path\nfrom time import monotonic\nfrom taskplane.streams.serde import Serde\n")
    assert imported(module) & FORBIDDEN == {"os", "time", "taskplane.streams"}
