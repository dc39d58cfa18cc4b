"""taskplane for users' own test suites: ``simulate`` (``taskplane simulate`` as a function),
``invariant`` (mark a check the simulator runs after each seed) and ``simulating`` (a
tool module picks its fakes then). The pytest plugin (``taskplane.testing.pytest_plugin``)
adds the fixtures ``taskplane_sim`` and ``taskplane_stack``. See docs/testing.md.

The real stack, for tests, benches and the demo (``stack``): ``ProcessorThreads``,
``WorkerProcess``, ``EventLog`` and manifest helpers; progress probes in ``progress``."""

from taskplane.testing.simulation.invariants import invariant
from taskplane.testing.simulation.result import SimEvent, SimRun, SimulationResult, Violation
from taskplane.testing.simulation.runner import Report, simulate
from taskplane.testing.simulation.seed import simulating
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
