"""Running one tool call under its timeout and isolation mode.

- ``none``: a thread of the worker. For trusted tools only: a thread cannot be
  killed, so on timeout the call fails and the thread is abandoned.
- ``process``: ``python -m taskplane.workers._runner`` in a new session with RLIMIT_CPU and
  RLIMIT_AS, a scrubbed environment (PATH, LANG, PYTHONPATH and the variables the tool
  declares), killed (its whole process group) at the timeout.
- ``container``: the same runner inside bubblewrap: new namespaces (network only when
  ``Limits.network``: the manifest grants it and the tool's code asks for it), read-only ``/``, fresh ``/dev``, ``/proc`` and ``/tmp``.
- ``wasm``: wasmtime with fuel, a linear-memory cap and an epoch deadline at the timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from taskplane.contract.plan import Isolation
from taskplane.workers.exceptions import (
    IsolationUnavailable,
    ToolError,
    ToolResourceExceeded,
    ToolTimeout,
)
from taskplane.workers.sdk import ToolSpec

BWRAP_BASE = ("--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
              "--tmpfs", "/tmp", "--die-with-parent", "--new-session")


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_ms: int
    memory_bytes: int = 1024 * 2**20
    cpu_seconds: int | None = None  # default: the timeout rounded up, plus one
    wasm_fuel: int = 2_000_000_000
    wasm_memory_bytes: int = 64 * 2**20
    network: bool = False  # container isolation: share the host network (Attempt grants it)

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000

    @property
    def cpu(self) -> int:
        return self.cpu_seconds or math.ceil(self.timeout_s) + 1


def bwrap_available() -> tuple[bool, str]:
    """Whether bubblewrap can make a sandbox here (it cannot in many containers)."""
    try:
        done = subprocess.run(["bwrap", *BWRAP_BASE, "true"], capture_output=True, timeout=10)
    except FileNotFoundError:
        return False, "bwrap is not installed (apt-get install bubblewrap)"
    except subprocess.TimeoutExpired:
        return False, "bwrap did not answer within 10s"
    if done.returncode != 0:
        return False, f"bwrap cannot create a sandbox: {done.stderr.decode(errors='replace').strip()}"
    return True, "ok"


def wasm_available() -> tuple[bool, str]:
    try:
        import wasmtime  # noqa: F401
    except ImportError:
        return False, "wasmtime is not installed (pip install wasmtime)"
    return True, "ok"


def run_tool(spec: ToolSpec, args: dict[str, Any], key: str, isolation: Isolation, limits: Limits) -> Any:
    """Run one call; returns its JSON value or raises a ``ToolError``."""
    match isolation:
        case Isolation.NONE:
            return _in_thread(spec, args, key, limits)
        case Isolation.PROCESS:
            return _in_subprocess(spec, args, key, limits, [])
        case Isolation.CONTAINER:
            return _in_subprocess(spec, args, key, limits, _bwrap_prefix(limits))
        case Isolation.WASM:
            return _in_wasm(spec, args, limits)


def _call_args(spec: ToolSpec, args: dict[str, Any], key: str) -> dict[str, Any]:
    return {**args, "idempotency_key": key} if spec.wants_key else dict(args)


def _in_thread(spec: ToolSpec, args: dict[str, Any], key: str, limits: Limits) -> Any:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = spec.function(**_call_args(spec, args, key))
        except BaseException as error:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = error

    thread = threading.Thread(target=target, name=f"tool-{spec.name}", daemon=True)
    thread.start()
    thread.join(limits.timeout_s)
    if thread.is_alive():
        raise ToolTimeout(spec.name, f"no answer after {limits.timeout_ms} ms (thread abandoned)")
    return _returned(spec, outcome)


def run_inline(spec: ToolSpec, args: dict[str, Any], key: str) -> Any:
    """One call on this thread, its outcome mapped as isolation ``none`` maps it, without
    the timeout thread: for ``taskplane simulate``, which times tools out in virtual time."""
    outcome: dict[str, Any] = {}
    try:
        outcome["result"] = spec.function(**_call_args(spec, args, key))
    except Exception as error:  # a simulated crash (a BaseException) goes through
        outcome["error"] = error
    return _returned(spec, outcome)


def _returned(spec: ToolSpec, outcome: dict[str, Any]) -> Any:
    """The call's JSON result, or its failure as a ``ToolError`` (retryable unless the
    error says otherwise)."""
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, ToolError):
            raise error
        if isinstance(error, MemoryError):
            raise ToolResourceExceeded(spec.name, "MemoryError") from error
        raise ToolError(spec.name, f"{type(error).__name__}: {error}",
                        retryable=getattr(error, "retryable", True) is not False) from error
    try:
        json.dumps(outcome.get("result"))
    except (TypeError, ValueError) as error:
        raise ToolError(spec.name, f"result is not JSON: {error}", retryable=False) from error
    return outcome.get("result")


def _bwrap_prefix(limits: Limits) -> list[str]:
    network = ["--share-net"] if limits.network else []
    return ["bwrap", *BWRAP_BASE, *_code_under_tmp(), *network, "--"]


def _code_under_tmp() -> list[str]:
    """Read-only binds for the interpreter and the import path where they live under
    /tmp, which the sandbox's own tmpfs would otherwise hide (a checkout in /tmp)."""
    # The folder taskplane's own code is read from: site-packages for an install, the
    # checkout for an editable one (whose finder maps the package there, off sys.path).
    source = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    paths = {sys.prefix, sys.base_prefix, os.path.dirname(sys.executable), source, *(p for p in sys.path if p)}
    under = sorted(p for p in paths if (p == "/tmp" or p.startswith("/tmp/")) and os.path.exists(p))
    binds: list[str] = []
    for path in under:
        if not any(path.startswith(parent + "/") for parent in under if parent != path):
            binds += ["--ro-bind", path, path]
    return binds


def scrubbed_env(spec: ToolSpec) -> dict[str, str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": os.environ.get("LANG", "C.UTF-8"),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "PYTHONDONTWRITEBYTECODE": "1"}
    env.update({name: os.environ[name] for name in spec.env if name in os.environ})
    return env


def _in_subprocess(spec: ToolSpec, args: dict[str, Any], key: str, limits: Limits, prefix: list[str]) -> Any:
    call = {"module": spec.module, "module_file": spec.module_file, "qualname": spec.qualname,
            "args": args, "key": key, "pass_key": spec.wants_key,
            "cpu_seconds": limits.cpu, "memory_bytes": limits.memory_bytes}
    process = subprocess.Popen([*prefix, sys.executable, "-m", "taskplane.workers._runner"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=scrubbed_env(spec),
                               start_new_session=True, cwd="/")
    try:
        out, err = process.communicate(json.dumps(call).encode(), timeout=limits.timeout_s)
    except subprocess.TimeoutExpired:
        _kill_group(process)
        process.communicate()
        raise ToolTimeout(spec.name, f"killed after {limits.timeout_ms} ms") from None
    return _answer(spec, process.returncode, out, err)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def _answer(spec: ToolSpec, returncode: int, out: bytes, err: bytes) -> Any:
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise ToolResourceExceeded(spec.name, f"CPU limit reached (signal {-returncode})")
    try:
        answer = json.loads(out)
    except ValueError:
        tail = err.decode(errors="replace").strip()[-500:]
        raise ToolError(spec.name, f"runner exited {returncode} without an answer: {tail}") from None
    if answer["ok"]:
        return answer["result"]
    if answer.get("kind") == "memory":
        raise ToolResourceExceeded(spec.name, answer["error"])
    raise ToolError(spec.name, answer["error"], retryable=answer.get("kind") != "non_retryable")


def _in_wasm(spec: ToolSpec, args: dict[str, Any], limits: Limits) -> Any:
    try:
        import wasmtime
    except ImportError as error:
        raise IsolationUnavailable("wasmtime is not installed") from error
    if spec.wasm is None:
        raise ToolError(spec.name, "isolation wasm but the tool declares no wasm= module", retryable=False)
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_fuel(limits.wasm_fuel)
    store.set_limits(memory_size=limits.wasm_memory_bytes)
    store.set_epoch_deadline(1)
    try:
        module = wasmtime.Module.from_file(engine, spec.wasm)
        instance = wasmtime.Instance(store, module, [])
        function = instance.exports(store)[spec.export]
    except (wasmtime.WasmtimeError, KeyError, FileNotFoundError) as error:
        raise ToolError(spec.name, f"cannot load {spec.wasm}: {error}", retryable=False) from error
    if not isinstance(function, wasmtime.Func):
        raise ToolError(spec.name, f"export {spec.export!r} is not a function", retryable=False)
    order = spec.params or tuple(args)
    timer = threading.Timer(limits.timeout_s, engine.increment_epoch)
    timer.start()
    try:
        return function(store, *(args[name] for name in order))
    except wasmtime.Trap as trap:
        if trap.trap_code == wasmtime.TrapCode.OUT_OF_FUEL:
            raise ToolResourceExceeded(spec.name, f"out of fuel ({limits.wasm_fuel} units)") from None
        if trap.trap_code == wasmtime.TrapCode.INTERRUPT:
            raise ToolTimeout(spec.name, f"interrupted after {limits.timeout_ms} ms") from None
        raise ToolError(spec.name, f"wasm trap: {trap.trap_code}") from None
    except wasmtime.WasmtimeError as error:
        raise ToolError(spec.name, f"wasm error: {error}") from None
    finally:
        timer.cancel()
