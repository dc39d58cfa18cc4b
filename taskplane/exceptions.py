"""The surface's errors: what a user gave us that we cannot use.

Rooted in ``taskplane.contract.errors.TaskplaneError`` like every other error; the
CLI turns one into its message and ``exit_code`` instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from taskplane.contract.errors import TaskplaneError


class UserInputError(TaskplaneError):
    """The user gave us something we cannot use; ``field`` names it when known."""

    exit_code = 2

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, retryable=False)
        self.field = field


class Problem(NamedTuple):
    """One thing wrong with a manifest: where (``spec.agents[2].dependencies``) and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ManifestError(UserInputError):
    """An AgentSystem manifest was refused; ``problems`` lists every reason at once."""

    def __init__(self, problems: Iterable[tuple[str, str]]) -> None:
        self.problems: list[Problem] = [Problem(path, reason) for path, reason in problems]
        if not self.problems:
            self.problems = [Problem("<manifest>", "invalid manifest")]
        super().__init__("\n".join(self.lines()), field=self.problems[0].path)

    def lines(self) -> list[str]:
        """One ``path: reason`` line per problem, in the order found."""
        return [str(problem) for problem in self.problems]
