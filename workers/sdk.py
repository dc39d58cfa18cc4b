"""The tool SDK: agents and tools are plain functions registered by name.

    from taskplane.workers.sdk import AgentContext, agent, tool

    @tool("document.extract")
    def extract(path: str, idempotency_key: str) -> dict:
        return {"text": open(path).read()}

    @agent("parser")
    def parser(ctx: AgentContext) -> dict:
        return ctx.call_tool("document.extract", path=ctx.run_input["path"])

An agent may be ``async def``: a worker runs those on one event loop, many at once
(agent work is mostly waiting on models and APIs), and their tool calls are awaited:

    @agent("summarizer")
    async def summarizer(ctx: AgentContext) -> dict:
        text = await ctx.call_tool_async("document.extract", path=ctx.run_input["path"])
        return {"summary": await my_model_client.complete(text)}

``@agent``/``@tool`` only mark the function (no global registry); a worker builds its
``Registry`` from the module that defines them (``Registry.from_module``). A tool that
declares a parameter ``idempotency_key`` (or ``**kwargs``) receives the call's key, so
it can deduplicate an external side effect; one that declares ``traceparent`` receives
the W3C header of its ``execute_tool`` span, for the calls it makes (docs/tracing.md). Tools take and return JSON values.

A tool run with isolation ``wasm`` is a WebAssembly module next to the Python module:
``@tool("score", wasm="score.wat", export="run")``; its export takes the call's numeric
arguments in declaration order (``params``) and returns a number. The Python function
is then the reference implementation, used when the manifest says another isolation.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TypeVar

from taskplane.contract.trace_ids import traceparent
from taskplane.workers.exceptions import RegistryError
from taskplane.workers.journal import task_key

F = TypeVar("F", bound=Callable[..., Any])

_AGENT_MARK = "__taskplane_agent__"
_TOOL_MARK = "__taskplane_tool__"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    function: Callable[..., Any]
    module: str  # importable name, or the synthetic name of a module loaded by path
    qualname: str
    module_file: str | None
    wasm: str | None = None  # absolute path of the .wasm/.wat module
    export: str = "run"
    params: tuple[str, ...] = ()  # wasm argument order
    network: bool = False  # container isolation shares the network only when True
    env: tuple[str, ...] = ()  # variables passed through the scrubbed environment
    traceparent: bool = False  # declares a ``traceparent`` parameter: gets its call's span header

    @property
    def wants_key(self) -> bool:
        return _wants_key(self.function)


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    function: Callable[..., Any]

    @property
    def is_async(self) -> bool:
        """An ``async def`` agent: run on the worker's event loop, not in a thread."""
        return inspect.iscoroutinefunction(self.function)


def agent(name: str) -> Callable[[F], F]:
    """Mark ``function(ctx: AgentContext) -> JSON value`` (``def`` or ``async def``) as
    the code of agent ``name``."""

    def mark(function: F) -> F:
        setattr(function, _AGENT_MARK, name)
        return function

    return mark


def tool(
    name: str,
    *,
    wasm: str | None = None,
    export: str = "run",
    params: tuple[str, ...] = (),
    network: bool = False,
    env: tuple[str, ...] = (),
) -> Callable[[F], F]:
    """Mark ``function(**args) -> JSON value`` as tool ``name``. ``wasm`` is relative to
    the defining module's file; ``network`` lets a container-isolated tool reach the
    network; ``env`` names variables an isolated tool still sees (e.g. a DB URL)."""

    def mark(function: F) -> F:
        setattr(function, _TOOL_MARK, {"name": name, "wasm": wasm, "export": export,
                                       "params": tuple(params), "network": network, "env": tuple(env)})
        return function

    return mark


class Registry:
    """Agents and tools by name, for one worker."""

    def __init__(self) -> None:
        self.agents: dict[str, AgentSpec] = {}
        self.tools: dict[str, ToolSpec] = {}

    @classmethod
    def from_module(cls, module: ModuleType) -> Registry:
        registry = cls()
        registry.add_module(module)
        return registry

    def add_module(self, module: ModuleType) -> None:
        for value in vars(module).values():
            if callable(value) and getattr(value, "__module__", None) == module.__name__:
                self.add(value)

    def add(self, function: Callable[..., Any]) -> None:
        agent_name = getattr(function, _AGENT_MARK, None)
        if agent_name is not None:
            if agent_name in self.agents:
                raise RegistryError(f"agent {agent_name!r} registered twice")
            self.agents[agent_name] = AgentSpec(agent_name, function)
        options = getattr(function, _TOOL_MARK, None)
        if options is not None:
            self.tools[options["name"]] = _tool_spec(function, options)

    def agent(self, name: str) -> AgentSpec:
        try:
            return self.agents[name]
        except KeyError:
            raise RegistryError(f"no agent {name!r} registered (have: {sorted(self.agents)})") from None

    def tool(self, name: str) -> ToolSpec:
        try:
            return self.tools[name]
        except KeyError:
            raise RegistryError(f"no tool {name!r} registered (have: {sorted(self.tools)})") from None


@functools.lru_cache(maxsize=1024)
def _wants_key(function: Callable[..., Any]) -> bool:
    """Whether the tool takes the call's key; asked on every call, and ``inspect.signature``
    was a tenth of a simulated seed's time."""
    parameters = inspect.signature(function).parameters.values()
    return any(p.name == "idempotency_key" or p.kind is p.VAR_KEYWORD for p in parameters)


def _tool_spec(function: Callable[..., Any], options: Mapping[str, Any]) -> ToolSpec:
    module = sys.modules.get(function.__module__)
    module_file = getattr(module, "__file__", None)
    wasm = options["wasm"]
    if wasm is not None and module_file is not None:
        wasm = str((Path(module_file).parent / wasm).resolve())
    if "<locals>" in function.__qualname__:
        raise RegistryError(f"tool {options['name']!r}: define it at module level (isolated runs import it)")
    return ToolSpec(options["name"], function, function.__module__, function.__qualname__, module_file,
                    wasm, options["export"], options["params"], options["network"], options["env"],
                    "traceparent" in inspect.signature(function).parameters)


class ToolCaller(Protocol):
    def __call__(self, name: str, args: dict[str, Any]) -> Any: ...


class AsyncToolCaller(Protocol):
    def __call__(self, name: str, args: dict[str, Any]) -> Awaitable[Any]: ...


@dataclass
class AgentContext:
    """What an agent sees of its task. ``inputs`` are its dependencies' outputs by
    agent name, ``run_input`` the run's input, both decoded from JSON."""

    run_id: str
    task: str
    attempt: int
    model: str | None
    run_input: Any
    inputs: dict[str, Any]
    _call: ToolCaller = field(repr=False)
    _call_async: AsyncToolCaller | None = field(default=None, repr=False)
    epoch: int = 0  # the lease's fencing epoch: names the attempt's span
    _report: Callable[[int, object, str | None], None] | None = field(default=None, repr=False)

    def report_usage(self, tokens: int = 0, cost: object = 0, model: str | None = None) -> None:
        """Record what the agent's own model calls used: ``tokens``, ``cost`` as a decimal
        string (``"0.0031"``), ``model`` (default: the agent's). It goes to the log with
        the next tool call or the attempt's outcome, and counts against the run's budget
        at once (docs/governance.md). A model the policy does not allow fails the task."""
        if self._report is not None:
            self._report(tokens, cost, model)

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` header of this attempt's ``invoke_agent`` span, for
        outgoing calls: a service that joins it lands in the run's trace (docs/tracing.md)."""
        return traceparent(self.run_id, self.task, self.attempt, self.epoch)

    @property
    def idempotency_key(self) -> str:
        """The task's key, the same in every attempt (for side effects outside tools);
        derived when asked: most agents never do."""
        return task_key(self.run_id, self.task)

    def call_tool(self, name: str, **args: Any) -> Any:
        """Run tool ``name`` (journaled, timed out, isolated as the manifest says) and
        return its result; raises ``ToolError`` when it fails."""
        return self._call(name, args)

    async def call_tool_async(self, name: str, **args: Any) -> Any:
        """``call_tool`` for an ``async def`` agent: the tool runs off the event loop
        while other agents go on. An attempt's calls run one at a time, in the order
        they were made (the journal matches them by that order on a retry)."""
        if self._call_async is None:
            raise RegistryError(f"agent of task {self.task!r} is a plain def: use ctx.call_tool(...)")
        return await self._call_async(name, args)


def decode_json(text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
