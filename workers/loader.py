"""Finding the user's code: ``--module`` is a dotted module or a ``.py`` path; without
it, ``examples/<system>/tools.py`` of a checkout (the examples' layout) is tried, then
the example systems shipped in the wheel (``taskplane._examples.<system>.tools``)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from taskplane.workers.exceptions import RegistryError

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"  # a checkout's; absent in an install
SHIPPED_EXAMPLES = "taskplane._examples"


def load_user_module(module: str | None, system: str) -> ModuleType:
    if module is None:
        candidate = EXAMPLES / system / "tools.py"
        if candidate.is_file():
            return _load_path(candidate)
        package = f"{SHIPPED_EXAMPLES}.{system.replace('-', '_')}"
        try:
            shipped = importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):  # not a module name at all
            shipped = False
        if shipped:
            return importlib.import_module(f"{package}.tools")
        raise RegistryError(f"no --module given, {candidate} does not exist and taskplane ships no "
                            f"example system {system!r}")
    if module.endswith(".py") or "/" in module:
        return _load_path(Path(module))
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise RegistryError(f"cannot import {module}: {error}") from error


def _load_path(path: Path) -> ModuleType:
    path = path.resolve()
    # A stable, importable-looking name: isolated runs fall back to the file path.
    name = "taskplane_user_" + "_".join(part.replace("-", "_") for part in path.with_suffix("").parts[-2:])
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
