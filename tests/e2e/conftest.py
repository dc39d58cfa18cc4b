"""Fixtures of the end-to-end tests (defined in ``e2e_pipeline``)."""

import sys
from pathlib import Path

# tests/processors/projector is a package: with only tests/ on sys.path it shadows
# taskplane.processors.projector (the editable finder comes after PathFinder). The repo root on
# sys.path lets the real, regular packages win.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.append(_ROOT)

from e2e_pipeline import fakepay, pipeline  # noqa: E402

__all__ = ["fakepay", "pipeline"]
