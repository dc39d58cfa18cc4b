"""``taskplane validate -f FILE``: check an AgentSystem manifest without a broker.

``render_plan_summary`` and ``plan_summary`` are shared with ``apply``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from taskplane.durations import format_duration
from taskplane.exceptions import ManifestError, UserInputError
from taskplane.manifest import AgentSystemManifest, ToolSpec, load_manifest


def register(app: typer.Typer) -> None:
    """Add the system commands to the ``taskplane`` app."""
    app.command("validate")(validate)


def validate(
    file: Annotated[Path, typer.Option("--file", "-f", help="AgentSystem manifest (YAML).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Check a manifest and print what it defines; exit 2 with every problem if it is bad."""
    try:
        manifest = load_manifest(file)
    except ManifestError as error:
        for line in error.lines():
            typer.echo(line, err=True)
        count = len(error.problems)
        typer.echo(f"{file}: refused ({count} problem{'s' if count > 1 else ''})", err=True)
        if as_json:
            problems = [{"path": p.path, "reason": p.reason} for p in error.problems]
            typer.echo(json.dumps({"valid": False, "problems": problems}, indent=2))
        raise typer.Exit(error.exit_code) from None
    except UserInputError as error:
        typer.echo(f"error: --file: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    if as_json:
        typer.echo(json.dumps({"valid": True, **plan_summary(manifest)}, indent=2))
    else:
        typer.echo(render_plan_summary(manifest))


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
        "retrySchedule": [format_duration(ms) for ms in _retry_delays_ms(manifest)],
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
    schedule = ", ".join(format_duration(ms) for ms in _retry_delays_ms(manifest)) or "none"
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


def _retry_delays_ms(manifest: AgentSystemManifest) -> list[int]:
    execution = manifest.spec.execution
    return [
        min(
            round(execution.initial_backoff * execution.backoff_multiplier**attempt),
            execution.max_backoff_cap,
        )
        for attempt in range(execution.max_retries)
    ]


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
