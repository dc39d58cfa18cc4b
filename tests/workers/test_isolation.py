"""Each isolation mode stops what it promises to stop."""

from __future__ import annotations

import os
import time

import pytest

from taskplane.contract.plan import Isolation
from taskplane.workers.exceptions import ToolError, ToolResourceExceeded, ToolTimeout
from taskplane.workers.isolation import Limits, bwrap_available, run_tool
from taskplane.workers.sdk import Registry
from tests.workers import sample_tools

REGISTRY = Registry.from_module(sample_tools)
_BWRAP_OK, _BWRAP_WHY = bwrap_available()
# Outside CI a machine without bubblewrap skips these; in CI they run and fail loudly.
needs_bwrap = pytest.mark.skipif(not _BWRAP_OK and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
                                 reason=_BWRAP_WHY)


def _run(tool: str, isolation: Isolation, timeout_ms: int = 5_000, **args: object) -> object:
    return run_tool(REGISTRY.tool(tool), dict(args), "k" * 32, isolation, Limits(timeout_ms))


@pytest.mark.parametrize("isolation", [Isolation.NONE, Isolation.PROCESS])
def test_a_tool_gets_its_args_and_key(isolation: Isolation) -> None:
    assert _run("test.echo", isolation, value=[1, "a"]) == {"value": [1, "a"], "key": "k" * 32}


@pytest.mark.parametrize(
    "isolation", [Isolation.NONE, Isolation.PROCESS, pytest.param(Isolation.CONTAINER, marks=needs_bwrap)]
)
def test_a_tool_that_sleeps_forever_is_stopped_at_its_timeout(isolation: Isolation) -> None:
    started = time.monotonic()
    with pytest.raises(ToolTimeout):
        _run("test.sleep", isolation, timeout_ms=500)
    assert time.monotonic() - started < 3


def test_a_process_tool_allocating_10_gb_is_stopped_by_its_memory_limit() -> None:
    with pytest.raises(ToolResourceExceeded, match="memory"):
        _run("test.allocate", Isolation.PROCESS, timeout_ms=20_000, gigabytes=10)


def test_a_process_tool_sees_a_scrubbed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    env = _run("test.env", Isolation.PROCESS)
    assert isinstance(env, dict)
    assert "SECRET_TOKEN" not in env
    assert set(env) <= {"PATH", "LANG", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "LC_CTYPE"}


@needs_bwrap
def test_a_container_tool_runs_and_cannot_write_outside_tmp(tmp_path: object) -> None:
    assert _run("test.echo", Isolation.CONTAINER, value=3) == {"value": 3, "key": "k" * 32}
    with pytest.raises(ToolError, match="Read-only file system|Permission denied"):
        _run("test.write_root", Isolation.CONTAINER, path="/etc/taskplane-escape")
    assert _run("test.write_root", Isolation.CONTAINER, path="/tmp/inside") == "written"


def test_a_wasm_tool_runs_and_an_infinite_loop_stops_on_fuel() -> None:
    assert _run("test.add", Isolation.WASM, a=2, b=40) == 42
    started = time.monotonic()
    with pytest.raises(ToolResourceExceeded, match="fuel"):
        run_tool(REGISTRY.tool("test.loop"), {"n": 1}, "k", Isolation.WASM, Limits(60_000, wasm_fuel=50_000_000))
    assert time.monotonic() - started < 30


def test_a_wasm_infinite_loop_with_plenty_of_fuel_stops_at_the_timeout() -> None:
    with pytest.raises(ToolTimeout):
        run_tool(REGISTRY.tool("test.loop"), {"n": 1}, "k", Isolation.WASM, Limits(300, wasm_fuel=10**15))


@needs_bwrap
@pytest.mark.parametrize(("granted", "expected"), [(False, "ConnectionRefusedError"), (True, "connected")])
def test_the_manifest_decides_network_even_when_the_code_asks_for_it(granted: bool, expected: str) -> None:
    """test.connect declares network=True in its code; a ToolPlan from a manifest saying
    ``network: false`` still runs it in a sandbox of its own network namespace, where the
    host's listening port does not exist."""
    import json
    import socket
    import threading

    from taskplane.contract.messages import Assignment, CompleteTask
    from taskplane.contract.plan import AgentPlan, ToolPlan
    from taskplane.workers.attempt import Attempt
    from taskplane.workers.settings import WorkerSettings

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        plan = AgentPlan("netter", None, (ToolPlan("test.connect", 10_000, 0, Isolation.CONTAINER, 3, 1_000,
                                                   network=granted),), ())
        assignment = Assignment("w1", "run-1", "netter", 1, True, None, 1, 0, 30_000, "sys", None,
                                json.dumps({"port": port}), {}, ())
        sent: list[object] = []
        Attempt(assignment, plan, REGISTRY, WorkerSettings(worker_id="w1"), sent.append, lambda _tool: None,
                threading.Event()).run()
    done = sent[-1]
    assert isinstance(done, CompleteTask), sent
    assert json.loads(done.output) == expected
