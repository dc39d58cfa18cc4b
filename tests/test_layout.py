"""The package layout agrees with itself: setup.py's folder map, the symlinks under
taskplane/, the packages on disk, the image's COPY lines and the import-linter contracts.
A new package or folder that one of them misses fails here (docs/layers.md, "Adding a
package"). And one import path: the bare folder names are banned and not importable."""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "taskplane"
SKIP = {".git", ".venv", ".cache", ".tools", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
        "build", "dist", "__pycache__", "node_modules"}


def _setup() -> dict[str, Any]:
    return runpy.run_path(str(ROOT / "setup.py"), run_name="layout")


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _symlinks() -> list[Path]:
    found = []
    for path, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP and not d.endswith(".egg-info") and not d.startswith(".venv")]
        found += [Path(path, name) for name in dirs + files if Path(path, name).is_symlink()]
    return found


def test_every_part_of_the_namespace_has_one_symlink_pointing_out_of_taskplane() -> None:
    folders = _setup()["FOLDERS"]
    assert folders["taskplane"] == "taskplane"
    for package, folder in folders.items():
        if package == "taskplane":
            continue
        link = PACKAGE.joinpath(*package.split(".")[1:])
        assert link.is_symlink(), f"{link.relative_to(ROOT)} must be a symlink to {folder}/ (setup.py FOLDERS)"
        assert link.resolve() == (ROOT / folder).resolve(), f"{link.relative_to(ROOT)} -> {os.readlink(link)}, not {folder}"
    expected = {PACKAGE.joinpath(*p.split(".")[1:]) for p in folders if p != "taskplane"}
    # One direction only: every symlink lives in taskplane/ and stands for a mapped folder.
    assert set(_symlinks()) == expected, "symlinks outside setup.py's FOLDERS, or pointing into taskplane/"


def test_the_packages_setup_finds_are_the_packages_python_finds() -> None:
    setup = _setup()
    on_disk = {"taskplane"}
    for path, dirs, files in os.walk(PACKAGE, followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        if "__init__.py" in files:
            on_disk.add(".".join(["taskplane", *Path(path).relative_to(PACKAGE).parts]).rstrip("."))
    cwd = os.getcwd()
    os.chdir(ROOT)  # setup.py's folders are relative to the root, as setuptools runs it
    try:
        packages = set(setup["packages"]())
    finally:
        os.chdir(cwd)
    assert packages == on_disk | set(setup["FOLDERS"]), (
        f"missing from setup.py: {sorted(on_disk - packages)}; not on disk: {sorted(packages - on_disk - set(setup['FOLDERS']))}")


def test_the_image_copies_every_folder_of_the_wheel() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    build_stage = dockerfile.split("\nFROM ", 2)[1]
    copied = set()
    for line in re.findall(r"^COPY (?!--from)(.+)$", build_stage, re.MULTILINE):
        *sources, _target = line.split()
        copied |= set(sources)
    for source in copied:
        assert (ROOT / source).exists(), f"deploy/Dockerfile copies {source}, which does not exist"
    missing = set(_setup()["FOLDERS"].values()) - copied
    assert not missing, f"deploy/Dockerfile's build stage does not COPY {sorted(missing)}"


def test_the_layers_contract_names_every_child_of_taskplane_and_nothing_else() -> None:
    contracts = _pyproject()["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers" and c["containers"] == ["taskplane"])
    named = [name.strip() for layer in layers["layers"] for name in re.split(r"[|:]", layer)]
    children = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
                if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert sorted(named) == sorted(children), (
        f"not in the layers contract: {sorted(children - set(named))}; named but absent: {sorted(set(named) - children)}")
    for contract in contracts:
        for module in contract.get("source_modules", []) + [m for m in contract.get("forbidden_modules", [])
                                                            if m.startswith("taskplane.")]:
            assert importlib.util.find_spec(module) is not None, f"{contract['name']!r} names {module}, which does not exist"


def test_bare_folder_imports_are_banned_and_do_not_import() -> None:
    ruff = Path(sys.executable).parent / "ruff"
    probe = "from contract.errors import TaskplaneError\nimport streams.serde\n\nprint(TaskplaneError, streams)\n"
    done = subprocess.run([str(ruff), "check", "--no-cache", "--select", "TID251", "--output-format", "concise",
                           "--stdin-filename", "probe.py", "-"], input=probe, capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert done.returncode == 1 and done.stdout.count("TID251") == 2, done.stdout + done.stderr
    # The test session itself has one import path (tests/conftest.py), even with the root on sys.path.
    for name in ("contract", "streams", "processors", "workers", "devstack", "schemas"):
        with pytest.raises(ModuleNotFoundError, match=f"import taskplane.{name}, not {name}"):
            importlib.import_module(f"{name}.anything")
