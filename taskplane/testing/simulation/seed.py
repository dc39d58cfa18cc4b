"""One seed: the user's module imported afresh, the world and its workers, the runs
submitted, virtual time run out, the invariants checked."""

from __future__ import annotations

import contextvars
import importlib.util
import itertools
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, ModuleType
from typing import Any

from taskplane.contract.cron import ScheduleSpec
from taskplane.contract.plan import SystemPlan
from taskplane.testing.simulation.cron import CRON_SLOTS
from taskplane.testing.simulation.faults import Faults
from taskplane.testing.simulation.invariants import check_builtin, check_user, user_invariants
from taskplane.testing.simulation.result import SimulationResult
from taskplane.testing.simulation.workers import Pool
from taskplane.testing.simulation.world import HORIZON_MS, SUBMIT_SPACING_MS, World
from taskplane.workers.exceptions import RegistryError
from taskplane.workers.sdk import Registry

_SIMULATING: contextvars.ContextVar[bool] = contextvars.ContextVar("taskplane_simulating", default=False)
_FRESH = itertools.count()
# The module's compiled code by (path, mtime, size): each seed executes it afresh, but
# compiling it each time was a fifth of a seed where bytecode caching is off.
_CODE: dict[tuple[str, int, int], CodeType] = {}


def simulating() -> bool:
    """True while ``taskplane simulate`` imports or runs the user's module: a tool module
    picks its fakes (an in-memory bank) instead of the real service then."""
    return _SIMULATING.get()


@contextmanager
def _simulating() -> Iterator[None]:
    # The worker's per-attempt log lines (a failed attempt, a denied network grant) would
    # be thousands a seed: the report says what matters.
    quiet = logging.getLogger("taskplane.workers")
    token, level = _SIMULATING.set(True), quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        yield
    finally:
        quiet.setLevel(level)
        _SIMULATING.reset(token)


@dataclass(frozen=True, slots=True)
class Setup:
    """What every seed of one simulation shares."""

    plan: SystemPlan
    module: str  # a .py path or a dotted module name
    inputs: tuple[Any, ...]
    workers: int = 3
    concurrency: int = 4
    schedules: tuple[ScheduleSpec, ...] = ()  # the manifest's cron schedules, fired by the real cron decider


@contextmanager
def fresh_module(module: str) -> Iterator[ModuleType]:
    """The user's module imported afresh (its module-level fakes start empty), under a
    name of its own, gone from ``sys.modules`` afterwards."""
    if module.endswith(".py") or "/" in module:
        path = Path(module).resolve()
        if not path.is_file():
            raise RegistryError(f"--module: no such file {module}")
    else:
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError) as error:
            raise RegistryError(f"--module: cannot import {module}: {error}") from None
        if spec is None or spec.origin is None:
            raise RegistryError(f"--module: cannot import {module}")
        path = Path(spec.origin)
    name = f"taskplane_sim_user_{next(_FRESH)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"--module: cannot load {module}")
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded
    try:
        with _simulating():
            try:
                exec(_compiled(path), loaded.__dict__)  # noqa: S102 - the user's module, as an import runs it
            except Exception as error:
                raise RegistryError(f"--module: importing {module} failed: {type(error).__name__}: {error}") from None
        yield loaded
    finally:
        sys.modules.pop(name, None)


def _compiled(path: Path) -> CodeType:
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    code = _CODE.get(key)
    if code is None:
        code = _CODE[key] = compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    return code


def run_seed(setup: Setup, seed: int, rates: dict[str, float], runs: Sequence[int],
             only: frozenset[str] | None = None) -> SimulationResult:
    """Simulate runs ``runs`` (indices into the cycled inputs) under ``seed``'s faults
    (only those in ``only`` when given) and check every invariant."""
    with fresh_module(setup.module) as module:
        registry = Registry.from_module(module)
        missing = [a.name for a in setup.plan.agents if a.name not in registry.agents]
        if missing:
            raise RegistryError(f"--module: no @agent for {', '.join(missing)} in {setup.module}")
        faults = Faults(seed, rates, only)
        outages = []
        start = round(faults.draw("outage", "broker@start", 0, 10_000))
        if faults.fires("outage", "broker", start):
            outages.append((start, start + round(faults.draw("outage", "broker@length", 2_000, 8_000))))
        world = World(setup.plan, faults, outages)
        pool = Pool(world, registry, setup.plan, setup.workers, setup.concurrency)
        with _simulating():
            for index in runs:
                payload = setup.inputs[index % len(setup.inputs)]
                world.submit(index, f"s{seed}-r{index}", payload, index * SUBMIT_SPACING_MS)
            world.schedule(setup.schedules, slots=max(len(runs), CRON_SLOTS))
            world.loop.run(HORIZON_MS)
            result = SimulationResult(seed, world.runs(), world.events, world.breaker_events, world.executions,
                                      list(faults.fired), world.events[-1].at_ms if world.events else 0,
                                      world.orchestrator.decided + world.breaker.decided + world.dispatcher.decided
                                      + world.cron.decided,
                                      fault_times=sorted(faults.timeline), crashes=dict(world.crashes),
                                      cron_events=world.cron_events, started_ahead=pool.started_ahead,
                                      cron_down=list(world.cron.down), ended_ms=world.loop.now)
            result.violations = check_builtin(setup.plan, result)
            result.violations += check_user(user_invariants(module), result)
        return result
