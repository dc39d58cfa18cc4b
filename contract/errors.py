"""The root of taskplane's error tree.

Every error taskplane raises on purpose derives from ``TaskplaneError``, whatever
layer raises it: the contract (``DecisionError``), the log runtime (``StreamsError``),
the workers (``WorkerError``) and the surface (``UserInputError``). It lives in the
lowest layer so that every layer can root its errors here. See ``docs/errors.md``.
"""

from __future__ import annotations


class TaskplaneError(Exception):
    """Root of every deliberate taskplane error.

    ``retryable`` says whether trying the same thing again may succeed (a broker
    that is down) or not (a bad manifest). ``exit_code`` is what the CLI exits with
    when it reports the error as one line instead of a traceback.
    """

    exit_code: int = 1
    retryable: bool = False

    def __init__(self, message: str = "", *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable
