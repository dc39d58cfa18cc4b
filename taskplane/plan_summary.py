"""What a manifest defines, as plain data (``plan_summary``) and as a few terminal lines
(``render_plan_summary``): shared by ``taskplane validate``/``apply`` and the console, so
it lives below both (the console must not import the CLI: docs/layers.md)."""

from __future__ import annotations

import json
from typing import Any

from taskplane.durations import format_duration
from taskplane.manifest import AgentSystemManifest, ToolSpec

RETRIES_LISTED = 20


def plan_summary(manifest: AgentSystemManifest) -> dict[str, Any]:
    """What the manifest defines, as plain data: agents in topological order with their
    dependencies and tools, and the execution policy. No secrets."""
    breakers = manifest.spec.breakers
    return {
        "name": manifest.name,
        "version": manifest.version(),
        "apiVersion": manifest.api_version,
        "agents": [
            {
                "name": agent.name,
                "model": agent.model,
                "dependencies": list(agent.dependencies),
                "tools": [_tool_summary(tool) for tool in agent.tools],
            }
            for agent in manifest.topological_order()
        ],
        "execution": manifest.model_dump(mode="json", by_alias=True)["spec"]["execution"],
        "breakers": {
            "failureThreshold": breakers.failure_threshold,
            "cooldown": format_duration(breakers.cooldown),
        },
        "persistence": {
            "backend": manifest.spec.persistence.backend,
            "connectionString": "set" if manifest.spec.persistence.connection_string else None,
        },
        "retrySchedule": [format_duration(ms) for ms in _retry_delays_ms(manifest)[0]],
        "moreRetries": _retry_delays_ms(manifest)[1],
    }


def render_plan_summary(manifest: AgentSystemManifest) -> str:
    """A few lines for a terminal: name and version, agents in the order they can run
    with dependencies and tools, then the execution and breaker policy."""
    execution, breakers = manifest.spec.execution, manifest.spec.breakers
    agents = manifest.topological_order()
    width = max(len(agent.name) for agent in agents)
    lines = [
        f"AgentSystem {manifest.name} (version {manifest.version()}, {manifest.api_version})",
        f"agents ({len(agents)}, in dependency order):",
    ]
    for agent in agents:
        deps = ", ".join(agent.dependencies) or "-"
        tools = ", ".join(_tool_text(tool) for tool in agent.tools) or "-"
        model = f"  model: {agent.model}" if agent.model else ""
        lines.append(f"  {agent.name:<{width}}  after: {deps}  tools: {tools}{model}")
    delays, more = _retry_delays_ms(manifest)
    schedule = ", ".join(format_duration(ms) for ms in delays) or "none"
    if more:
        settled = delays[-1] == execution.max_backoff_cap or execution.backoff_multiplier == 1
        then = format_duration(delays[-1]) if settled else f"up to {format_duration(execution.max_backoff_cap)}"
        schedule += f", then {then} for {more} more"
    lines += [
        f"execution: lease {format_duration(execution.lease_timeout)}, "
        f"maxRetries {execution.max_retries}, backoff {format_duration(execution.initial_backoff)}"
        f" x{execution.backoff_multiplier:g} capped at {format_duration(execution.max_backoff_cap)}"
        f" (jitter {execution.jitter_fraction:g}), "
        f"dead letters {_on(execution.dead_letter_transition)}, "
        f"idempotency {_on(execution.idempotency_tracking)}",
        f"retry delays before jitter: {schedule}",
        f"breakers: open after {breakers.failure_threshold} failures, "
        f"cooldown {format_duration(breakers.cooldown)}",
    ]
    return "\n".join(lines)


def _retry_delays_ms(manifest: AgentSystemManifest) -> tuple[list[int], int]:
    """The delays before the first retries (until the cap, a multiplier of 1, or 20 of
    them), and how many retries follow, at the last delay up to the cap. Not ``**``:
    2 ** 1100 overflows a float, and a million retries are not a million lines."""
    execution = manifest.spec.execution
    delays: list[int] = []
    delay, cap = float(execution.initial_backoff), execution.max_backoff_cap
    for _ in range(min(execution.max_retries, RETRIES_LISTED)):
        delays.append(min(round(delay), cap))
        if delay >= cap or execution.backoff_multiplier == 1:
            break
        delay *= execution.backoff_multiplier
    return delays, execution.max_retries - len(delays)


def _tool_summary(tool: ToolSpec) -> dict[str, Any]:
    return tool.model_dump(mode="json", by_alias=True, exclude_none=True)


def _tool_text(tool: ToolSpec) -> str:
    defaults = ToolSpec(name=tool.name).model_dump(mode="json", by_alias=True)
    options = [
        f"{key} {value if isinstance(value, str) else json.dumps(value)}"
        for key, value in tool.model_dump(mode="json", by_alias=True, exclude_none=True).items()
        if key != "name" and value != defaults.get(key)
    ]
    return f"{tool.name} ({', '.join(options)})" if options else tool.name


def _on(flag: bool) -> str:
    return "on" if flag else "off"
