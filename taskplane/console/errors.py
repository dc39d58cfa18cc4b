"""The console's errors: each maps to one HTTP status and one line for the user."""

from __future__ import annotations

from taskplane.contract.errors import TaskplaneError
from taskplane.exceptions import UserInputError


class ConsoleError(TaskplaneError):
    """Root of the console's errors; ``status`` is the HTTP status it answers with."""

    status: int = 500


class BadRequest(UserInputError, ConsoleError):
    """A malformed filter, cursor or form field; ``field`` names it."""

    status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field)


class NotFound(ConsoleError):
    status = 404


class Forbidden(ConsoleError):
    """Read-only console, missing or wrong token, or a failed CSRF check."""

    status = 403


class ReadModelUnavailable(ConsoleError):
    """Postgres did not answer (or the projector has not created the read model yet).
    The message never carries the connection string."""

    status = 503
    retryable = True


class CommandFailed(ConsoleError):
    """A replay or cancel could not be written to Kafka."""

    status = 502
    retryable = True
