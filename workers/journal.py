"""Idempotency keys and the per-attempt view of a run's tool-call journal.

A key is ``sha256(run_id, task, tool, call_index, canonical JSON of args)`` (hex, first
32 characters): the same logical call in a later attempt, or on another worker, has
the same key, so a call that already succeeded is answered from the journal.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from json.encoder import encode_basestring
from typing import Any

from taskplane.contract.messages import JournalEntry


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def idempotency_key(run_id: str, task: str, tool: str, call_index: int, args: Any) -> str:
    # canonical_json([run_id, task, tool, call_index, canonical_json(args)]), spelled out
    # with the string encoder json.dumps uses when ensure_ascii is off:
    # the same text without encoding the outer list (a third of the key's cost, which
    # every tool call pays).
    material = (f"[{encode_basestring(run_id)},{encode_basestring(task)},{encode_basestring(tool)},"
                f"{int(call_index)},{encode_basestring(canonical_json(args))}]")
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def task_key(run_id: str, task: str) -> str:
    """A key for the task itself, the same in every attempt (for the agent's own
    side effects outside tools)."""
    return hashlib.sha256(canonical_json([run_id, task]).encode()).hexdigest()[:32]


class Journal:
    """Succeeded calls of a run as the Assignment carried them, plus the calls this
    attempt recorded since (so a repeated call inside one attempt is answered too), and
    the calls a person granted that have not run yet."""

    def __init__(self, entries: Iterable[JournalEntry] = (), granted: Iterable[str] = ()) -> None:
        self._results: dict[str, str] = {entry.key: entry.result for entry in entries}
        self._granted = frozenset(granted)

    def granted(self, key: str) -> bool:
        """A person granted this call and it has not run yet."""
        return key in self._granted and key not in self._results

    def lookup(self, key: str) -> str | None:
        """The recorded JSON result of a succeeded call, or None."""
        return self._results.get(key)

    def record(self, key: str, result: str) -> None:
        self._results[key] = result

    def __len__(self) -> int:
        return len(self._results)
