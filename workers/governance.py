"""What governs a call, checked by the worker before the call (docs/governance.md).

The orchestrator decides from the log (``processors/orchestrator/budget.py``); the
worker refuses what the run's policy already forbids, before it runs: a blocked tool,
a model not allowed, and any tool call once the run's budget is spent, as far as it
knows (the run's usage at grant, carried by the Assignment, plus its own since), or
once the orchestrator told it the run stopped. Each refusal fails the task
``NON_RETRYABLE`` with the reason first in its error.

A tool may return its usage with its result in one documented form, a JSON object of
exactly these two keys; the agent gets ``VALUE``:

    {"result": VALUE, "taskplane_usage": {"tokens": 120, "cost": "0.0012", "model": "gpt-4o"}}
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from taskplane.contract.governance import (
    BUDGET_EXCEEDED,
    MODEL_NOT_ALLOWED,
    TOOL_BLOCKED,
    PolicyPlan,
    Usage,
    exhausted,
    parse_cost,
)
from taskplane.workers.exceptions import WorkerError

USAGE_KEY = "taskplane_usage"
RUN_STOPPED = "run_stopped"  # told by the orchestrator: the run ended (its budget, or else)


class GovernanceRefusal(WorkerError):
    """The policy refused a call before it ran: the task fails at once, no retry."""

    retryable = False

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def usage(tokens: int = 0, cost: object = 0, model: str | None = None) -> Usage:
    """One report as the log carries it; ValueError on a bad value (the agent's bug)."""
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens must be a non-negative int, got {tokens!r}")
    if isinstance(cost, float):  # accepted for convenience; the log keeps exact micro-units
        cost = str(Decimal(repr(cost)))
    if isinstance(cost, Decimal):
        cost = str(cost)
    return Usage(model or "", tokens, parse_cost(cost))


def split_result(result: Any) -> tuple[Any, Usage | None]:
    """A tool's result and the usage it returned in the documented form, if any."""
    if type(result) is dict and len(result) == 2 and USAGE_KEY in result and "result" in result:
        report = result[USAGE_KEY]
        if isinstance(report, dict):
            return result["result"], usage(report.get("tokens", 0), report.get("cost", 0), report.get("model"))
    return result, None


class Governor:
    """One attempt's view of its run's policy and usage."""

    __slots__ = ("policy", "tokens", "cost_micros", "model")

    def __init__(self, policy: PolicyPlan, run_tokens: int, run_cost_micros: int, model: str | None) -> None:
        self.policy = policy
        self.tokens = run_tokens  # the run's at grant, plus this attempt's since
        self.cost_micros = run_cost_micros
        self.model = model

    def check_model(self, model: str | None) -> None:
        allowed = self.policy.allowed_models
        if allowed is not None and (model or "") not in allowed:
            raise GovernanceRefusal(MODEL_NOT_ALLOWED, f"model {model!r} is not in allowedModels {list(allowed)}")

    def before_call(self, tool: str, stopped: bool) -> None:
        """Raise when the call must not run: blocked, or no budget left."""
        if tool in self.policy.blocked_tools:
            raise GovernanceRefusal(TOOL_BLOCKED, f"tool {tool!r} is blocked by policy")
        if stopped:
            raise GovernanceRefusal(RUN_STOPPED, "the orchestrator stopped the run")
        if exhausted(self.policy, self.tokens, self.cost_micros):
            raise GovernanceRefusal(BUDGET_EXCEEDED, f"the run used {self.tokens} tokens, "
                                    f"{self.cost_micros} micro-units: no budget left for {tool!r}")

    def seen(self, run_tokens: int, run_cost_micros: int) -> None:
        """The run's usage as the orchestrator answered: others' attempts count too."""
        self.tokens = max(self.tokens, run_tokens)
        self.cost_micros = max(self.cost_micros, run_cost_micros)

    def add(self, report: Usage) -> None:
        self.tokens += report.tokens
        self.cost_micros += report.cost_micros


AnswerKey = tuple[str, str, int]  # run id, task, epoch
_KEPT = 10_000


class UsageAnswers:
    """The orchestrator's answers to a worker's tool-call records of runs with a budget
    (``USAGE_NOTICE`` on the inbox): how many came per attempt, and the run's usage in
    the latest. Filled by the inbox reader, read by attempts before their next call."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._answers: dict[AnswerKey, tuple[int, int, int]] = {}  # count, tokens, cost_micros

    def post(self, key: AnswerKey, tokens: int, cost_micros: int) -> None:
        with self._changed:
            count = self._answers.get(key, (0, 0, 0))[0]
            self._answers[key] = (count + 1, tokens, cost_micros)
            if len(self._answers) > _KEPT:  # answers to attempts that ended here already: oldest first
                del self._answers[next(iter(self._answers))]
            self._changed.notify_all()

    def wait(self, key: AnswerKey, count: int, timeout_s: float,
             stopped: Callable[[], bool]) -> tuple[int, int] | None:
        """The run's usage once ``count`` answers came; None at the timeout or when the
        run stopped meanwhile (its records are refused then: no answer comes)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                answer = self._answers.get(key)
                if answer is not None and answer[0] >= count:
                    return answer[1], answer[2]
                left = deadline - time.monotonic()
                if left <= 0 or stopped():
                    return None
                self._changed.wait(min(left, 0.05))

    def forget(self, key: AnswerKey) -> None:
        with self._changed:
            self._answers.pop(key, None)
