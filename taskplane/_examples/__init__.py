"""The example systems ``taskplane demo`` runs, shipped in the wheel.

The systems' code is in examples/document-pipeline and examples/payment-processor,
packaged here (setup.py ``FOLDERS``; in a checkout the folders here are links to them,
one copy); examples/fakepay/server.py starts :mod:`.fakepay`.
A system's folder holds its manifest (``system.yaml``) and its agents and tools
(``tools.py``, importable as ``taskplane._examples.<system with _>.tools``).
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SYSTEMS = ("document-pipeline", "payment-processor")


def system_dir(system: str) -> Path:
    return HERE / system.replace("-", "_")


def manifest_path(system: str) -> Path:
    return system_dir(system) / "system.yaml"


def tools_module(system: str) -> str:
    """The dotted module of a shipped system's agents and tools."""
    return f"{__name__}.{system.replace('-', '_')}.tools"


DOCUMENTS = system_dir("document-pipeline") / "docs"
