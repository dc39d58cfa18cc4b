"""Fixtures of the end-to-end tests (defined in ``e2e_pipeline``; tests import helpers as
the ``tests`` package, through tests/conftest.py's finder)."""

from tests.e2e.e2e_pipeline import fakepay, pipeline

__all__ = ["fakepay", "pipeline"]
