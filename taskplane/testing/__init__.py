"""taskplane for users' own test suites: ``simulate`` (``taskplane simulate`` as a function),
``invariant`` (mark a check the simulator runs after each seed) and ``simulating`` (a
tool module picks its fakes then). The pytest plugin (``taskplane.testing.pytest_plugin``)
adds the fixtures ``taskplane_sim`` and ``taskplane_stack``. See docs/testing.md."""

from taskplane.testing.simulation.invariants import invariant
from taskplane.testing.simulation.result import SimEvent, SimRun, SimulationResult, Violation
from taskplane.testing.simulation.runner import Report, simulate
from taskplane.testing.simulation.seed import simulating

__all__ = ["Report", "SimEvent", "SimRun", "SimulationResult", "Violation", "invariant", "simulate", "simulating"]
