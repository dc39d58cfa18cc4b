"""Fixtures of the end-to-end tests (defined in ``e2e_pipeline``)."""

from e2e_pipeline import fakepay, pipeline

__all__ = ["fakepay", "pipeline"]
