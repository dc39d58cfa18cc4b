"""A run as a waterfall: attempts and tool calls on a time axis, waits shaded. A pure
function of read-model rows (the same facts the tracer's spans are made of).

One row per attempt, in task order: the attempt's bar from its grant to its outcome
(to ``now_ms`` while it runs), its tool calls as bars inside it (each from the attempt's
previous recorded step to the call's record, as the trace shows them), and the wait
before it (the task's previous attempt's end, or the run's submission, to the grant)
shaded. Every text is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from taskplane.console.dag import STATE_COLOURS

LABEL_W, ROW_H, BAR_H, WIDTH, PAD, AXIS_H = 190, 22, 14, 900, 8, 18
ATTEMPT_COLOURS = {"succeeded": STATE_COLOURS["succeeded"], "running": STATE_COLOURS["leased"],
                   "leased": STATE_COLOURS["leased"], "failed": STATE_COLOURS["failed"],
                   "expired": STATE_COLOURS["backoff"], "released": STATE_COLOURS["pending"]}


def rows(run: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]],
         calls: Sequence[Mapping[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """One dict per attempt: label, status, start/end, wait_from, and its calls' spans."""
    order = {t["task"]: i for i, t in enumerate(tasks)}
    out: list[dict[str, Any]] = []
    previous_end: dict[str, int] = {}
    for a in sorted(attempts, key=lambda a: (order.get(a["task"], len(order)), a["epoch"])):
        start = int(a["started_ms"])
        end = int(a["ended_ms"]) if a["ended_ms"] is not None else max(now_ms, start)
        step = start
        spans = []
        for c in sorted((c for c in calls if c["task"] == a["task"] and c["epoch"] == a["epoch"]),
                        key=lambda c: (c["at_ms"], c["call_index"])):
            spans.append({"tool": c["tool"], "ok": c["ok"], "start": step, "end": int(c["at_ms"])})
            step = int(c["at_ms"])
        out.append({"label": f"{a['task']} #{a['attempt']}", "status": a["status"], "start": start, "end": end,
                    "wait_from": previous_end.get(a["task"], int(run["submitted_ms"])), "calls": spans,
                    "worker": a["worker_id"], "error": a["error"]})
        previous_end[a["task"]] = end
    return out


def svg(run: Mapping[str, Any], tasks: Sequence[Mapping[str, Any]], attempts: Sequence[Mapping[str, Any]],
        calls: Sequence[Mapping[str, Any]], now_ms: int) -> str:
    bars = rows(run, tasks, attempts, calls, now_ms)
    if not bars:
        return '<p class="muted">No attempt yet.</p>'
    origin = int(run["submitted_ms"])
    finish = max([int(run["finished_ms"] or 0), *(b["end"] for b in bars), origin + 1])
    scale = (WIDTH - LABEL_W - 2 * PAD) / (finish - origin)

    def x(ms: int) -> float:
        return float(LABEL_W + PAD + (ms - origin) * scale)

    height = AXIS_H + len(bars) * ROW_H + PAD
    parts = [f'<svg class="waterfall" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="run timeline">',
             '<defs><pattern id="wait" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="3" height="6" fill="#d5dae0"/></pattern></defs>']
    for tick in range(5):
        ms = origin + (finish - origin) * tick // 4
        parts.append(f'<text x="{x(ms):.1f}" y="12" font-size="10" text-anchor="middle" fill="#5d6670">'
                     f'+{(ms - origin) / 1000:.2f}s</text>')
    for i, bar in enumerate(bars):
        y = AXIS_H + i * ROW_H
        top = y + (ROW_H - BAR_H) / 2
        colour = ATTEMPT_COLOURS.get(bar["status"], STATE_COLOURS["pending"])
        title = f"{bar['label']}: {bar['status']} on {bar['worker']}, {bar['end'] - bar['start']} ms"
        if bar["error"]:
            title += f" ({bar['error'][:200]})"
        parts.append(f'<g class="attempt" data-status="{escape(bar["status"])}">'
                     f'<text x="{PAD}" y="{y + ROW_H - 7}" font-size="12">{escape(bar["label"])}</text>')
        if bar["start"] > bar["wait_from"]:
            parts.append(f'<rect class="wait" x="{x(bar["wait_from"]):.1f}" y="{top:.1f}" '
                         f'width="{max(1.0, (bar["start"] - bar["wait_from"]) * scale):.1f}" height="{BAR_H}" '
                         f'fill="url(#wait)"><title>waiting {bar["start"] - bar["wait_from"]} ms</title></rect>')
        parts.append(f'<rect x="{x(bar["start"]):.1f}" y="{top:.1f}" '
                     f'width="{max(1.0, (bar["end"] - bar["start"]) * scale):.1f}" height="{BAR_H}" rx="2" '
                     f'fill="{colour}" opacity="0.55"><title>{escape(title)}</title></rect>')
        for call in bar["calls"]:
            fill = "#1f2d3d" if call["ok"] else STATE_COLOURS["failed"]
            parts.append(f'<rect class="call" x="{x(call["start"]):.1f}" y="{top + 3:.1f}" '
                         f'width="{max(1.5, (call["end"] - call["start"]) * scale):.1f}" height="{BAR_H - 6}" '
                         f'fill="{fill}"><title>{escape(call["tool"])}: {"ok" if call["ok"] else "failed"}, '
                         f'{call["end"] - call["start"]} ms</title></rect>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)


def trace_link(template: str | None, trace_id: str) -> str | None:
    """``TASKPLANE_TRACE_URL`` with ``{trace_id}`` filled in (appended when absent)."""
    if not template:
        return None
    return template.replace("{trace_id}", trace_id) if "{trace_id}" in template else template.rstrip("/") + "/" + trace_id
