"""Child side of ``process`` and ``container`` isolation (``python -m taskplane.workers._runner``).

Reads one call as JSON on stdin, sets its own rlimits before importing user code
(setting them here instead of in ``preexec_fn`` keeps the forking worker, which has
threads, clear of preexec's deadlock hazard), runs the tool and writes one JSON
answer on the original stdout; the tool's own prints go to stderr.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.util
import json
import os
import resource
import signal
import sys
from typing import Any

_PR_SET_PDEATHSIG = 1


def _limit(cpu_seconds: int, memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    with contextlib.suppress(OSError, AttributeError):  # die with the worker even if it is SIGKILLed
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _load(call: dict[str, Any]) -> Any:
    name, path = call["module"], call.get("module_file")
    try:
        module = importlib.import_module(name)
    except ImportError:
        if not path:
            raise
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    target: Any = module
    for part in call["qualname"].split("."):
        target = getattr(target, part)
    return target


def main() -> None:
    call = json.loads(sys.stdin.read())
    _limit(int(call["cpu_seconds"]), int(call["memory_bytes"]))
    answer_fd = os.dup(1)
    os.dup2(2, 1)  # the tool's prints must not corrupt the answer
    answer: dict[str, Any]
    try:
        function = _load(call)
        args = dict(call["args"])
        if call.get("pass_key"):
            args["idempotency_key"] = call["key"]
        answer = {"ok": True, "result": function(**args)}
    except MemoryError:
        answer = {"ok": False, "kind": "memory", "error": "MemoryError: memory limit reached"}
    except BaseException as error:  # noqa: BLE001 - everything is reported to the worker
        kind = "non_retryable" if getattr(error, "retryable", True) is False else "error"
        answer = {"ok": False, "kind": kind, "error": f"{type(error).__name__}: {error}"}
    try:
        text = json.dumps(answer)
    except (TypeError, ValueError) as error:
        text = json.dumps({"ok": False, "kind": "error", "error": f"result is not JSON: {error}"})
    with os.fdopen(answer_fd, "w") as out:
        out.write(text)


if __name__ == "__main__":
    main()
