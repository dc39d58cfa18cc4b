"""A run's DAG as SVG, and what a replay unblocks. Pure functions of read-model rows.

Tasks are laid out in columns by depth (the longest path from a root), in DAG
order within a column; each node is coloured by its state, and a blocked node is
outlined and names its blocker. Every text is XML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 48, 60, 22, 12
STATE_COLOURS = {
    "succeeded": "#2e9d57", "leased": "#2f6fd6", "ready": "#6b9be8", "backoff": "#e0a526",
    "pending": "#9aa3ad", "blocked": "#c0392b", "dead_lettered": "#8e1f14", "failed": "#8e1f14",
    "cancelled": "#5d6670",
}


def depths(tasks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Longest-path depth of each task (roots at 0); unknown dependencies are ignored."""
    deps = {t["task"]: [d for d in t["dependencies"] or () if d != t["task"]] for t in tasks}
    depth: dict[str, int] = {}

    def visit(name: str, trail: frozenset[str]) -> int:
        if name in depth:
            return depth[name]
        parents = [d for d in deps.get(name, ()) if d in deps and d not in trail]
        found = 1 + max((visit(d, trail | {name}) for d in parents), default=-1)
        depth[name] = found
        return found

    for task in deps:
        visit(task, frozenset())
    return depth


def downstream(tasks: Sequence[Mapping[str, Any]], task: str) -> list[str]:
    """Every task that depends on ``task``, directly or not, in DAG order."""
    children: dict[str, list[str]] = {}
    for row in tasks:
        for dep in row["dependencies"] or ():
            children.setdefault(dep, []).append(row["task"])
    seen: set[str] = set()
    stack = [task]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return [row["task"] for row in tasks if row["task"] in seen]


def unblocks(tasks: Sequence[Mapping[str, Any]], task: str) -> list[str]:
    """The downstream tasks that a replay of ``task`` releases: those blocked by it now."""
    blocked = {row["task"] for row in tasks if row["status"] == "blocked" and row["blocked_by"] == task}
    return [name for name in downstream(tasks, task) if name in blocked]


def svg(tasks: Sequence[Mapping[str, Any]]) -> str:
    """The DAG as an inline SVG document (links go to the task's section: ``#task-<name>``)."""
    if not tasks:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10" role="img"></svg>'
    depth = depths(tasks)
    columns: dict[int, list[str]] = {}
    for row in tasks:
        columns.setdefault(depth[row["task"]], []).append(row["task"])
    where: dict[str, tuple[int, int]] = {}
    for column, names in columns.items():
        for index, name in enumerate(names):
            where[name] = (PAD + column * (NODE_W + GAP_X), PAD + index * (NODE_H + GAP_Y))
    width = PAD * 2 + (max(columns) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(len(n) for n in columns.values()) * (NODE_H + GAP_Y) - GAP_Y
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="dag" width="{width}" height="{height}"'
             f' viewBox="0 0 {width} {height}" role="img" aria-label="task graph">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"'
             ' markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#7a828c"/>'
             '</marker></defs>']
    for row in tasks:
        x2, y2 = where[row["task"]]
        for dep in row["dependencies"] or ():
            if dep not in where:
                continue
            x1, y1 = where[dep]
            parts.append(f'<path class="edge" d="M {x1 + NODE_W} {y1 + NODE_H // 2} C {x1 + NODE_W + GAP_X // 2}'
                         f' {y1 + NODE_H // 2}, {x2 - GAP_X // 2} {y2 + NODE_H // 2}, {x2} {y2 + NODE_H // 2}"'
                         ' fill="none" stroke="#7a828c" stroke-width="1.5" marker-end="url(#arrow)"/>')
    for row in tasks:
        parts.append(_node(row, *where[row["task"]]))
    parts.append("</svg>")
    return "".join(parts)


def _node(row: Mapping[str, Any], x: int, y: int) -> str:
    name, status = str(row["task"]), str(row["status"])
    colour = STATE_COLOURS.get(status, "#9aa3ad")
    detail = status.replace("_", " ")
    if status == "blocked" and row.get("blocked_by"):
        detail = f"blocked by {row['blocked_by']}"
    elif status in ("leased", "backoff", "ready") and row.get("attempt"):
        detail = f"{detail} · attempt {row['attempt']}"
    outline = ' stroke="#ffffff" stroke-dasharray="5 3" stroke-width="2"' if status == "blocked" else ""
    label = name if len(name) <= 22 else name[:21] + "…"
    detail_text = detail if len(detail) <= 28 else detail[:27] + "…"
    return (f'<a href="#task-{escape(name)}"><g class="task" data-task="{escape(name)}" data-status="{escape(status)}">'
            f"<title>{escape(name)}: {escape(detail)}</title>"
            f'<rect x="{x}" y="{y}" width="{NODE_W}" height="{NODE_H}" rx="7" fill="{colour}"{outline}/>'
            f'<text x="{x + 10}" y="{y + 20}" fill="#fff" font-weight="bold" font-size="13">{escape(label)}</text>'
            f'<text x="{x + 10}" y="{y + 38}" fill="#fff" font-size="11">{escape(detail_text)}</text></g></a>')
