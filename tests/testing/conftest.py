"""The plugin's fixtures, as a user's conftest gets them (``pytest_plugins`` must live
in the root conftest; importing them works anywhere)."""

from taskplane.testing.pytest_plugin import taskplane_sim, taskplane_stack

__all__ = ["taskplane_sim", "taskplane_stack"]
