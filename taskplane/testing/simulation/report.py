"""The report ``taskplane simulate`` prints: a line per outcome when all seeds hold; for a
violation the seed, its fault schedule, the shrunk case, its event trace and the commands
that reproduce both. ``as_json`` is the same for CI."""

from __future__ import annotations

from typing import Any

from taskplane.testing.simulation.result import SimEvent
from taskplane.testing.simulation.runner import Case, Report

_SHOWN = ("task", "attempt", "epoch", "worker_id", "tool", "call_index", "kind", "counted", "backoff_ms",
          "due_ms", "expires_ms", "blocked_by", "command", "reason", "error")


def describe(event: Any) -> str:
    """An event without its ids, plan or payloads: what a person reads in a trace."""
    fields = []
    for name in _SHOWN:
        value = getattr(event, name, None)
        if value is None or value == "":
            continue
        text = value.value if hasattr(value, "value") else value
        fields.append(f"{name}={str(text)[:80]}")
    return f"{type(event).__name__} " + " ".join(fields)


def trace(case: Case, limit: int = 200) -> list[str]:
    """The shrunk case's events, of the runs its violations name (all its runs if none),
    with the faults that fired between them."""
    named = {r for v in case.violations for r in v.run_ids}
    records: list[SimEvent] = [e for e in case.result.events if not named or e.run_id in named]
    lines = [(e.at_ms, 2, f"{e.at_ms:>9} ms  {e.run_id:<10} {describe(e.event)}") for e in records[:limit]]
    lines += [(at, 1, f"{at:>9} ms  FAULT      {fault}") for at, fault in case.result.fault_times]
    lines += [(x.at_ms, 0, f"{x.at_ms:>9} ms  {x.run_id:<10} ran tool {x.tool} (task {x.task}, epoch {x.epoch})")
              for x in case.result.executions if not named or x.run_id in named]
    shown = [text for _, _, text in sorted(lines, key=lambda line: (line[0], line[1]))]
    if len(records) > limit:
        shown.append(f"... {len(records) - limit} more events")
    return shown


def as_text(report: Report) -> str:
    faults = ", ".join(f"{name} {rate:g}" for name, rate in report.faults.items()) or "none"
    head = (f"{report.system}: {report.passed} of {len(report.seeds)} seed(s) held, {report.runs} run(s) each, "
            f"faults: {faults}")
    cron = (f"{report.slots_fired} cron slots fired, {report.slots_skipped} skipped, "
            if report.slots_fired or report.slots_skipped else "")
    stats = (f"{report.runs_simulated} runs, {report.commands_decided} commands decided, "
             f"{report.started_ahead} tasks started ahead of their grant, {cron}"
             f"{report.virtual_ms / 1000:.0f} s virtual in {report.wall_s:.1f} s")
    if report.failure is None:
        return f"ok: {head}\n{stats}"
    failure, minimal = report.failure, report.minimal or report.failure
    lines = [f"VIOLATION at seed {failure.seed}: {head}"]
    lines += [f"  {v.invariant}: {v.message}" for v in failure.violations[:10]]
    if len(failure.violations) > 10:
        lines.append(f"  ... {len(failure.violations) - 10} more")
    lines.append(f"fault schedule of seed {failure.seed} ({len(failure.faults)} fired):")
    lines += [f"  {fault}" for fault in failure.faults[:40]]
    if len(failure.faults) > 40:
        lines.append(f"  ... {len(failure.faults) - 40} more")
    lines.append(f"smallest failing case ({report.shrink_trials} shrink trials): runs {minimal.runs}, "
                 f"faults {minimal.faults or 'none'}")
    lines += [f"  {v.invariant}: {v.message}" for v in minimal.violations[:5]]
    lines.append("its event trace:")
    lines += [f"  {line}" for line in trace(minimal)]
    lines.append(f"reproduce the seed:  {report.command}")
    lines.append(f"reproduce the case:  {report.minimal_command}")
    lines.append(stats)
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ok": report.ok, "system": report.system, "seeds": len(report.seeds), "passed": report.passed,
        "runs_per_seed": report.runs, "faults": report.faults, "runs_simulated": report.runs_simulated,
        "commands_decided": report.commands_decided, "started_ahead": report.started_ahead,
        "slots_fired": report.slots_fired, "slots_skipped": report.slots_skipped,
        "virtual_s": report.virtual_ms / 1000,
        "wall_s": round(report.wall_s, 3),
    }
    if report.failure is not None:
        minimal = report.minimal or report.failure
        data["failure"] = {
            "seed": report.failure.seed,
            "violations": [_violation(v) for v in report.failure.violations],
            "faults": report.failure.faults,
            "command": report.command,
            "minimal": {"runs": minimal.runs, "faults": minimal.faults,
                        "violations": [_violation(v) for v in minimal.violations],
                        "trace": trace(minimal), "command": report.minimal_command},
        }
    return data


def _violation(violation: Any) -> dict[str, Any]:
    return {"invariant": violation.invariant, "message": violation.message, "runs": list(violation.run_ids)}
