"""The error tree of ``streams/``: library errors are wrapped here and say whether
retrying the same operation can succeed.

``StreamsError`` is the root until the project has a common root error; re-parent it
then, nothing else changes for callers.
"""

from __future__ import annotations


class StreamsError(Exception):
    """Any failure of Kafka I/O or serialization.

    ``retryable`` is True when the same call may succeed later (a broker hiccup),
    False when it never will (a record that cannot be decoded).
    """

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class SerdeError(StreamsError):
    """A value could not be encoded, or bytes could not be decoded into a domain
    object: bad magic, unknown schema fingerprint, truncated or invalid body, or a
    body that does not map onto its dataclass. Never retryable: the same bytes fail
    the same way, so the record belongs on ``poison``."""

    retryable = False
