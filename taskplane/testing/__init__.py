"""taskplane for users' own test suites: ``simulate`` (``taskplane simulate`` as a function),
``invariant`` (mark a check the simulator runs after each seed) and ``simulating`` (a
tool module picks its fakes then). The pytest plugin (``taskplane.testing.pytest_plugin``)
adds the fixtures ``taskplane_sim`` and ``taskplane_stack``. See docs/testing.md.

The real stack, for tests, benches and the demo (``stack``): ``ProcessorThreads``,
``WorkerProcess``, ``EventLog`` and manifest helpers; progress probes in ``progress``."""

from typing import TYPE_CHECKING, Any

from taskplane.testing.simulation.invariants import invariant
from taskplane.testing.simulation.result import SimEvent, SimRun, SimulationResult, Violation
from taskplane.testing.simulation.runner import Report, simulate
from taskplane.testing.simulation.seed import simulating

if TYPE_CHECKING:
    from taskplane.testing.stack import (
        EventLog,
        ProcessorThreads,
        WorkerProcess,
        compile_manifest,
        example_manifest,
        manifest_with,
        worker_env,
    )

__all__ = ["Report", "SimEvent", "SimRun", "SimulationResult", "Violation", "invariant", "simulate", "simulating",
           "EventLog", "ProcessorThreads", "WorkerProcess", "compile_manifest", "example_manifest", "manifest_with",
           "worker_env"]

# The real stack loads on first use: a tool module that only asks ``simulating()`` (every
# isolated tool call imports it afresh) does not pay for Kafka clients and Prometheus.
_STACK = {"EventLog", "ProcessorThreads", "WorkerProcess", "compile_manifest", "example_manifest", "manifest_with",
          "worker_env"}


def __getattr__(name: str) -> Any:
    if name not in _STACK:
        raise AttributeError(f"module 'taskplane.testing' has no attribute {name!r}")
    from taskplane.testing import stack

    return getattr(stack, name)
