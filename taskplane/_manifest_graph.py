"""The AgentSystem dependency graph, checked on the raw manifest data so its
problems are reported next to the type errors: duplicates, unknown or self
dependencies, unknown fallbacks, cycles (named by their nodes), and the
topological order the summary prints. Nothing here recurses, and each check is linear
(or n log n) in the agents and dependencies: a chain or a cycle of thousands of agents
is checked like a short one."""

from __future__ import annotations

import difflib
import heapq
from collections.abc import Mapping
from typing import Any

from taskplane.exceptions import Problem

SUGGESTIONS = 20  # problems before "did you mean" stops being looked for


def _tool_entries(tools: object) -> list[tuple[int, str, str, Mapping[str, Any]]]:
    """(index, name, path suffix, options) for every tool item whose name can be read."""
    entries: list[tuple[int, str, str, Mapping[str, Any]]] = []
    for index, item in enumerate(tools if isinstance(tools, list) else []):
        if isinstance(item, str):
            entries.append((index, item, "", {}))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
            entries.append((index, item["name"], "", item))
        elif isinstance(item, Mapping) and len(item) == 1:
            ((name, options),) = item.items()
            if isinstance(name, str):
                opts = options if isinstance(options, Mapping) else {}
                entries.append((index, name, f".{name}", opts))
    return entries


def graph_problems(agents: list[Any]) -> list[Problem]:
    """Duplicates, unknown or self dependencies, unknown fallbacks and cycles."""
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for index, agent in enumerate(agents):
        name = agent.get("name") if isinstance(agent, Mapping) else None
        if not isinstance(name, str):
            continue
        if name in first_index:
            problems.append(
                Problem(
                    f"spec.agents[{index}].name",
                    f"duplicate agent name {name!r} (first at spec.agents[{first_index[name]}])",
                )
            )
        else:
            first_index[name] = index

    edges: dict[str, list[str]] = {name: [] for name in first_index}
    for index, agent in enumerate(agents):
        if not isinstance(agent, Mapping):
            continue
        name, where = agent.get("name"), f"spec.agents[{index}]"
        deps = agent.get("dependencies")
        seen: set[str] = set()
        for dep in deps if isinstance(deps, list | tuple) else []:
            if not isinstance(dep, str):
                continue
            if dep == name:
                problems.append(
                    Problem(f"{where}.dependencies", f"agent {dep!r} depends on itself")
                )
            elif dep not in first_index:
                suggest = len(problems) < SUGGESTIONS  # difflib is quadratic: not for thousands
                close = difflib.get_close_matches(dep, list(first_index), n=1) if suggest else []
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(Problem(f"{where}.dependencies", f"unknown agent {dep!r}{hint}"))
            elif dep in seen:
                problems.append(Problem(f"{where}.dependencies", f"{dep!r} is listed twice"))
            elif isinstance(name, str) and first_index[name] == index:
                edges[name].append(dep)
            seen.add(dep)

        tools = _tool_entries(agent.get("tools"))
        tool_names = {tool_name for _, tool_name, _, _ in tools}
        seen_tools: set[str] = set()
        for tool_index, tool_name, suffix, options in tools:
            tool_path = f"{where}.tools[{tool_index}]"
            if tool_name in seen_tools:
                problems.append(Problem(tool_path, f"duplicate tool {tool_name!r}"))
            seen_tools.add(tool_name)
            fallback = options.get("fallback")
            if isinstance(fallback, str) and fallback != tool_name and fallback not in tool_names:
                problems.append(
                    Problem(
                        f"{tool_path}{suffix}.fallback",
                        f"unknown tool {fallback!r}; declare the fallback in this agent's tools",
                    )
                )

    order = list(first_index)
    for cycle in _cycles(order, edges):
        problems.append(Problem("spec.agents", "dependency cycle " + " -> ".join(cycle)))
    return problems


def _cycles(order: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """One cycle per strongly connected component (Tarjan), each starting and ending at
    the component's first-declared agent; ``a -> b`` reads "a depends on b"."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    for root in order:
        if root in index_of:
            continue
        index_of[root] = low[root] = len(index_of)
        stack.append(root)
        on_stack.add(root)
        walk = [(root, iter(edges[root]))]  # the recursion of Tarjan's connect(), as a stack
        while walk:
            node, pending = walk[-1]
            nxt = next(pending, None)
            if nxt is not None:
                if nxt not in index_of:
                    index_of[nxt] = low[nxt] = len(index_of)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    walk.append((nxt, iter(edges[nxt])))
                elif nxt in on_stack:
                    low[node] = min(low[node], index_of[nxt])
                continue
            walk.pop()
            if walk:
                parent = walk[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)

    cycles = []
    rank = {name: position for position, name in enumerate(order)}
    for component in sorted(components, key=lambda c: min(rank[n] for n in c)):
        start = min(component, key=rank.__getitem__)
        came_from: dict[str, str] = {}
        frontier = [start]
        while start not in came_from:  # BFS inside the component: shortest way back
            next_frontier = []
            for node in frontier:
                for nxt in edges[node]:
                    if nxt in component and nxt not in came_from:
                        came_from[nxt] = node
                        next_frontier.append(nxt)
            frontier = next_frontier
        cycle = [start]
        node = came_from[start]
        while node != start:
            cycle.append(node)
            node = came_from[node]
        cycle.append(start)
        cycles.append(cycle[::-1])
    return cycles


def topological_order(nodes: list[tuple[str, tuple[str, ...]]]) -> list[str]:
    """Kahn's order, taking the first-declared ready agent each time (assumes a DAG)."""
    position = {name: index for index, (name, _) in enumerate(nodes)}
    waiting = {name: len(set(deps)) for name, deps in nodes}
    dependents: dict[str, list[str]] = {name: [] for name, _ in nodes}
    for name, deps in nodes:
        for dep in set(deps):
            if dep in dependents:
                dependents[dep].append(name)
            else:  # unknown: check() refuses these; never ready
                waiting[name] += len(nodes)
    ready = [position[name] for name, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    placed: list[str] = []
    while ready:
        name = nodes[heapq.heappop(ready)][0]
        placed.append(name)
        for child in dependents[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, position[child])
    if len(placed) < len(nodes):  # a cycle: check() refuses these; keep what is left in declaration order
        done = set(placed)
        placed.extend(name for name, _ in nodes if name not in done)
    return placed
