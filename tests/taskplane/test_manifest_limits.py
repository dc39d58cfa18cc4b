"""tools[].rateLimit and tools[].concurrency: parsed, validated with the field's path,
compiled into the ToolPlan the worker and the tool governor read."""

from __future__ import annotations

import pytest

from taskplane.exceptions import ManifestError
from taskplane.manifest import load_manifest_text
from taskplane.rates import format_rate, parse_rate

BASE = """\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: limits}}
spec:
  agents:
    - name: a
      tools:
        - plain.tool
        - openai.chat: {options}
"""


def plan_of(options: str) -> dict[str, tuple[int, int, int]]:
    plan = load_manifest_text(BASE.format(options=options)).to_plan("v1")
    return {t.name: (t.rate_limit, t.rate_period_ms, t.concurrency) for t in plan.agents[0].tools}


@pytest.mark.parametrize(("text", "rate"), [
    ("100/min", (100, 60_000)), ("5/s", (5, 1_000)), ("2000/h", (2000, 3_600_000)),
    ("10/10s", (10, 10_000)), (" 3 / min ", (3, 60_000)), ("7/1.5m", (7, 90_000)),
])
def test_rates_parse_and_print_back(text: str, rate: tuple[int, int]) -> None:
    assert parse_rate(text) == rate
    assert parse_rate(format_rate(*rate)) == rate


def test_limits_compile_into_the_tool_plan() -> None:
    plans = plan_of("{rateLimit: 100/min, concurrency: 20}")
    assert plans == {"plain.tool": (0, 0, 0), "openai.chat": (100, 60_000, 20)}
    assert plan_of("{concurrency: 3}")["openai.chat"] == (0, 0, 3)
    assert plan_of("{rateLimit: 5/s}")["openai.chat"] == (5, 1_000, 0)


def test_limits_change_the_version_only_where_declared() -> None:
    plain = load_manifest_text(BASE.format(options="{timeout: 5s}"))
    assert "rateLimit" not in plain.canonical_json() and "concurrency" not in plain.canonical_json()
    limited = load_manifest_text(BASE.format(options="{timeout: 5s, rateLimit: 60/min}"))
    assert '"rateLimit":"60/min"' in limited.canonical_json()


@pytest.mark.parametrize(("options", "problem"), [
    ("{rateLimit: 100/week}", "rateLimit: bad rate '100/week': unknown period 'week'"),
    ("{rateLimit: fast}", "rateLimit: bad rate 'fast'"),
    ("{rateLimit: 100}", "rateLimit: bad rate 100"),
    ("{rateLimit: 0/s}", "rateLimit: bad rate '0/s': calls and period must be positive"),
    ("{rateLimit: 5/0s}", "rateLimit: bad rate '5/0s': calls and period must be positive"),
    ("{rateLimit: 99999999999999999999999/min}", "rateLimit: bad rate '99999999999999999999999/min': at most 1000000"),
    ("{rateLimit: " + "9" * 5000 + "/min}", "rateLimit: bad rate '99999"),
    ("{concurrency: 99999999999999999999999}", "concurrency: must be <= 1000000, got 99999999999999999999999"),
    ("{concurrency: 0}", "concurrency: must be >= 1, got 0"),
    ("{concurrency: '5'}", "concurrency:"),
    ("{rateLimt: 5/s}", "rateLimt: unknown field (did you mean rateLimit?)"),
])
def test_a_bad_limit_is_refused_with_its_path(options: str, problem: str) -> None:
    with pytest.raises(ManifestError) as refused:
        load_manifest_text(BASE.format(options=options))
    assert f"spec.agents[0].tools[1].openai.chat.{problem}" in str(refused.value)
    assert refused.value.exit_code == 2


@pytest.mark.parametrize(("second", "problem"), [
    ("- openai.chat", "(rateLimit 100/min, concurrency 2)"),
    ("- openai.chat: {rateLimit: 50/min, concurrency: 2}", "(rateLimit 100/min, concurrency 2)"),
])
def test_a_tools_limits_are_the_same_in_every_agent(second: str, problem: str) -> None:
    text = f"""\
apiVersion: taskplane.dev/v1
kind: AgentSystem
metadata: {{name: limits}}
spec:
  agents:
    - name: a
      tools: [{{openai.chat: {{rateLimit: 100/min, concurrency: 2}}}}]
    - name: b
      tools:
        {second}
"""
    with pytest.raises(ManifestError) as refused:
        load_manifest_text(text)
    assert f"spec.agents[1].tools[0].openai.chat: limits differ from spec.agents[0].tools[0].openai.chat {problem}" \
        in str(refused.value)
    agreed = text.replace(second, "- openai.chat: {concurrency: 2, rateLimit: 100/min}")
    assert load_manifest_text(agreed).to_plan("v1").agents[1].tools[0].concurrency == 2
