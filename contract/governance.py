"""Governance records of the contract: usage reported by agents and tools, and the
policy a plan carries (budgets, allowed models, blocked tools).

Money is integer micro-units (``cost_micros``: 1 unit = 1_000_000) everywhere inside;
the manifest and every surface take and show decimal strings (``format_cost``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MICROS = 1_000_000
BUDGET_EXCEEDED = "budget_exceeded"
TOOL_BLOCKED = "tool_blocked"
MODEL_NOT_ALLOWED = "model_not_allowed"
# An inbox refusal whose reason starts so tells a worker the run stopped: its attempts
# stop at their next tool call.
STOPPED_NOTICE = "run stopped: "
# The answer to each RecordToolCall of a run with a budget: the run's usage after it
# (Assignment.run_tokens/run_cost_micros), so the holder's next call sees what the run's
# other attempts used, not only its own.
USAGE_NOTICE = "run usage"


@dataclass(frozen=True, slots=True)
class Usage:
    """What one call (or one attempt's own model calls) used, for one model ("" when
    unnamed)."""

    model: str = ""
    tokens: int = 0
    cost_micros: int = 0


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    """A plan's governance, merged from ``spec.policy`` and every ``AgentPolicy`` that
    targets the system. None means no limit; ``allowed_models`` None means any model."""

    max_tokens: int | None = None
    max_cost_micros: int | None = None
    allowed_models: tuple[str, ...] | None = None
    blocked_tools: tuple[str, ...] = ()


def budgeted(policy: PolicyPlan | None) -> bool:
    """Whether the policy limits usage (then each tool call waits for the run's usage)."""
    return policy is not None and (policy.max_tokens is not None or policy.max_cost_micros is not None)


def usage_totals(usage: Iterable[Usage]) -> tuple[int, int]:
    """(tokens, cost_micros) summed over reports."""
    tokens = cost = 0
    for report in usage:
        tokens += report.tokens
        cost += report.cost_micros
    return tokens, cost


def exhausted(policy: PolicyPlan | None, tokens: int, cost_micros: int) -> bool:
    """Whether a run that used this much has no budget left: it reached a limit."""
    if policy is None:
        return False
    return ((policy.max_tokens is not None and tokens >= policy.max_tokens)
            or (policy.max_cost_micros is not None and cost_micros >= policy.max_cost_micros))


def parse_cost(text: object) -> int:
    """A decimal string (``"0.25"``) as micro-units; ValueError when it is not one,
    is negative, or has more than six decimals."""
    if not isinstance(text, (str, int)) or isinstance(text, bool):
        raise ValueError(f"a cost is a decimal string like \"0.25\", got {text!r}")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"must be a finite, non-negative decimal, got {text!r}")
    micros = value * MICROS
    if micros != micros.to_integral_value():
        raise ValueError(f"at most 6 decimals, got {text!r}")
    return int(micros)


def format_cost(cost_micros: int) -> str:
    """Micro-units as a decimal string: 1500000 -> ``"1.5"``, 0 -> ``"0"``."""
    sign = "-" if cost_micros < 0 else ""
    whole, frac = divmod(abs(cost_micros), MICROS)
    return f"{sign}{whole}" if frac == 0 else f"{sign}{whole}.{frac:06d}".rstrip("0")
