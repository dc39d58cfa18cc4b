"""The console tests' command writer: answers every command with a set outcome and
remembers what it was asked (the real writer runs against the orchestrator in tests/e2e)."""

from __future__ import annotations

from dataclasses import dataclass, field

from taskplane.console.commands import Outcome

TOKEN = "tok-3f9a"


@dataclass
class RecordingCommands:
    """Answers every command with ``outcome`` and remembers what it was asked."""

    outcome: Outcome = field(default_factory=lambda: Outcome(True, "replayed"))
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def replay(self, run_id: str, task: str, requested_by: str = "console") -> Outcome:
        self.calls.append(("replay", run_id, task))
        return self.outcome

    def cancel(self, run_id: str, reason: str = "") -> Outcome:
        self.calls.append(("cancel", run_id))
        return self.outcome

    def close(self) -> None:
        pass
