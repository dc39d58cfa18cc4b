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


# ---------------------------------------------------------------- the client


class ClientError(TaskplaneError):
    """The client could not talk to the log (a missing topic, a broker that does not
    answer); usually worth retrying."""

    retryable = True


class UnknownSystem(UserInputError):
    """A submit named a system that was never applied; ``applied`` lists those that were."""

    def __init__(self, system: str, applied: Iterable[str]) -> None:
        self.system, self.applied = system, sorted(applied)
        known = ", ".join(self.applied) if self.applied else "none yet: taskplane apply -f FILE"
        super().__init__(f"no system named {system!r} was applied (applied: {known})", field="system")


class UnknownRun(UserInputError):
    """No run with this id is on the log."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no run {run_id!r} on the log", field="run")


class InputTooLarge(UserInputError):
    """A run's input does not fit in one record the broker accepts."""

    def __init__(self, size: int, limit: int, where: str) -> None:
        self.size, self.limit = size, limit
        super().__init__(f"the run's submit record is {size} bytes; the broker accepts at most {limit} bytes "
                         f"({where})", field="input")


class RunFailed(TaskplaneError):
    """A run ended without a result: ``status`` is ``failed``, ``cancelled``,
    ``rejected`` (the orchestrator refused the submit) or ``dead_lettered`` (``task``
    used up its ``attempts``, failing with ``error``; a replay may still save the run)."""

    def __init__(self, run_id: str, status: str, reason: str, task: str | None = None,
                 error: str | None = None, attempts: int | None = None) -> None:
        self.run_id, self.status, self.reason = run_id, status, reason
        self.task, self.error, self.attempts = task, error, attempts
        super().__init__(f"run {run_id} {status}: {reason}")


class RunTimeout(TaskplaneError, TimeoutError):
    """A wait ended before the run did (the run goes on)."""

    retryable = True
