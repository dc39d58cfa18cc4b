"""Seeded faults, by name. Every decision is a hash of (seed, the fault's coordinate), so a
fault hits the same attempt, call or command whatever else the seed simulates: a case
shrunk to fewer runs keeps its faults, and a fault list given back reproduces them.

A coordinate names what the fault hits by the run's index and the task, never by a
worker id or a time (which depend on the other runs):
``crash:3/charge/1@after:0`` is a crash of run 3's task ``charge``, attempt 1, after the
side effect of its first tool execution and before its record.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from taskplane.exceptions import UserInputError

# name -> (default rate, what it does); a rate is per chance the fault has to fire
FAULTS: dict[str, tuple[float, str]] = {
    "crash": (0.02, "a worker crashes before a tool call, after its side effect and before its record, "
                    "or before reporting the outcome (per chance)"),
    "slow": (0.01, "a worker stalls past the lease before a tool call: the lease expires, the task is "
                   "taken over, the stalled attempt completes late and is fenced (per tool call)"),
    "duplicate": (0.01, "a command or a work offer is delivered twice (per command and offer)"),
    "abort": (0.005, "the orchestrator's transaction aborts: the command is decided again after "
                     "recovery (per command)"),
    "outage": (0.5, "the broker is away for 2-8 s in the first 10 s (per seed)"),
    "tool-error": (0.05, "a tool call fails with a retryable error (per call)"),
    "tool-timeout": (0.02, "a tool call runs into its timeout; half of them had their side effect "
                           "(per call)"),
    "skew": (1.0, "a worker's clock is off by up to 1.5 s (per worker)"),
}


class SimulationInputError(UserInputError):
    """A bad ``--faults`` list or simulation option."""


def parse_faults(text: str | None) -> dict[str, float]:
    """``crash,tool-error=0.1`` -> rates by name; None or ``all`` is every fault at its
    default rate, ``none`` no fault."""
    if text is None or text.strip() == "all":
        return {name: rate for name, (rate, _) in FAULTS.items()}
    if text.strip() in ("", "none"):
        return {}
    rates: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        if name not in FAULTS:
            raise SimulationInputError(f"--faults: unknown fault {name!r} (known: {', '.join(FAULTS)})",
                                       field="--faults")
        try:
            rate = float(value) if value else FAULTS[name][0]
        except ValueError:
            raise SimulationInputError(f"--faults: {name}={value!r} is not a number", field="--faults") from None
        if not 0.0 <= rate <= 1.0:
            raise SimulationInputError(f"--faults: {name}={value} is not a rate in [0, 1]", field="--faults")
        rates[name] = rate
    return rates


def format_faults(rates: dict[str, float]) -> str:
    if not rates:
        return "none"
    return ",".join(f"{name}={rate:g}" for name, rate in rates.items())


_MASK = 2**64 - 1


def unit(seed: int, coordinate: str) -> float:
    """A number in [0, 1), the same for the same seed and coordinate (in any process:
    not ``hash``). CRC-32 of the coordinate, mixed with the seed by splitmix64's
    finalizer; a fault decision is asked thousands of times a seed."""
    z = (zlib.crc32(coordinate.encode()) * 0x9E3779B97F4A7C15 + seed * 0xBF58476D1CE4E5B9 + 0x632BE59BD9B4E5) & _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return (z ^ (z >> 31)) / 2.0**64


@dataclass(slots=True)
class Faults:
    """Which faults fire in one simulated seed. ``only``, when given, is the list of fault
    ids allowed to fire (a shrunk case); ``fired`` collects the ids that did, in order."""

    seed: int
    rates: dict[str, float]
    only: frozenset[str] | None = None
    fired: list[str] = field(default_factory=list)
    timeline: list[tuple[int, str]] = field(default_factory=list)  # (virtual ms, fault id), for traces

    def fires(self, name: str, coordinate: str, at_ms: int = 0) -> bool:
        rate = self.rates.get(name)
        if not rate:
            return False
        fault = f"{name}:{coordinate}"
        if self.only is not None and fault not in self.only:
            return False
        if unit(self.seed, fault) >= rate:
            return False
        self.fired.append(fault)
        self.timeline.append((at_ms, fault))
        return True

    def one_of(self, coordinate: str, options: tuple[tuple[str, str], ...]) -> tuple[str, float] | None:
        """At most one of ``options`` ((name, fault id), each with its name's rate) hits this
        site, by one draw: a tool call asks five questions and pays one hash. Returns the
        fault id (not yet ``noted``) and the draw, which also serves the site's other
        seeded choices."""
        u = unit(self.seed, coordinate)
        low = 0.0
        for name, fault in options:
            rate = self.rates.get(name, 0.0)
            if low <= u < low + rate:
                if self.only is not None and fault not in self.only:
                    return None
                return fault, u
            low += rate
        return None

    def note(self, fault: str, at_ms: int) -> None:
        self.fired.append(fault)
        self.timeline.append((at_ms, fault))

    def draw(self, name: str, coordinate: str, low: float, high: float) -> float:
        """A fault's parameter (a pause, a skew), fixed by its coordinate."""
        return low + (high - low) * unit(self.seed, f"{name}:{coordinate}#value")


def runs_of(fault_ids: Iterable[str]) -> set[int]:
    """The run indices the faults name (global ones, an outage or a skew, name none)."""
    found = set()
    for fault in fault_ids:
        _, _, coordinate = fault.partition(":")
        head = coordinate.split("/", 1)[0]
        if head.isdigit() and "/" in coordinate:
            found.add(int(head))
    return found
