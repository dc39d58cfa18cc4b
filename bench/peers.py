"""taskplane side by side with Restate, Celery and DBOS: the same 4-task DAG (parser →
validator ‖ summarizer → publisher, no-op tasks), the same sequential submitter, one
system after another on this machine.

    python -m bench.peers [--systems taskplane,restate,celery,dbos] [--submitters 1,8] [--quick]
                          [--keyed] [--history N]

It installs what is missing (the ``peers`` extra, the Restate server from npm under the
cache dir, Debian's redis-server) and starts every process itself. Per system: a
warm-up, then per repetition a saturated phase (runs submitted back to back) and a
light one (a fixed rate). Figures: tasks/s saturated, run latency p50/p95/p99 (submit →
the last task's own end time), CPU ms per run over all of the system's processes
(broker and servers included), median [min-max] over the repetitions. A system that
cannot be installed or started, or fails while measured, is reported as ``S_error``.

``--keyed`` submits every run with a fresh idempotency key (taskplane through the public
``Client``, Restate with its ``idempotency-key`` header; Celery and DBOS submit plain and
say so as ``S_keyed: false``), and each phase is paired with the same phase without keys
in the same run (``S_tasks_per_s_plain``, ``S_submit_p99_ms_plain``, ...); ``--client``
makes taskplane submit through the public ``Client`` without keys. ``--history N`` puts
N finished runs on each system's log before it is measured.

Last line: JSON with, per system S, S_tasks_per_s, S_p50_ms_light, S_p99_ms_light,
S_cpu_ms_per_run (saturated; S_cpu_ms_per_run_light too), S_submit_p99_ms (the submit
call at the light rate; S_submit_p99_ms_saturated back to back), or S_error. Writes a
PNG chart.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench._peers_base import TASKS, Peer
from bench._peers_install import PeerUnavailable, ensure_python_packages
from bench._peers_stats import (
    SYSTEMS,
    PhaseResult,
    SystemFigures,
    cpu_seconds,
    phase_result,
    summary_json,
)
from taskplane.streams.settings import StackSettings


@dataclass(frozen=True, slots=True)
class Plan:
    """How much each system is asked to do."""

    warmup: int = 200
    saturated: int = 2_000
    light: int = 200
    light_rate: float = 20.0
    repetitions: int = 3
    # The first count submits every phase; each further one adds a saturated phase per
    # repetition (S_tasks_per_s_by_submitters): capacity, not the submit call, is the best.
    submitters: tuple[int, ...] = (1, 8)
    timeout_s: float = 600.0
    idle_s: float = 5.0
    # Before the idle window: what a system still finishes after the warm-up's burst
    # (commits, compaction, a worker's last acknowledgements) is not its idle cost.
    settle_s: float = 5.0
    keyed: bool = False
    history: int = 0


# The idle window is 5 s here too: /proc counts CPU in 10 ms ticks per process, so 2 s
# read each of taskplane's 5 processes to +-5 ms/s, Restate's 1 to +-5 as well.
QUICK = Plan(warmup=20, saturated=150, light=40, repetitions=1, timeout_s=120.0, idle_s=5.0, settle_s=3.0,
             submitters=(1,))


def peer_classes() -> dict[str, Callable[[Path, Path], Peer]]:
    from bench._peer_celery import CeleryPeer
    from bench._peer_dbos import DbosPeer
    from bench._peer_restate import RestatePeer
    from bench._peer_taskplane import TaskplanePeer

    return {"taskplane": TaskplanePeer, "restate": RestatePeer, "celery": CeleryPeer, "dbos": DbosPeer}


def run_phase(peer: Peer, runs: int, rate: float | None, submitters: int, timeout_s: float) -> PhaseResult:
    """Submit ``runs`` runs from ``submitters`` sequential threads (back to back, or at
    ``rate`` runs/s overall), wait for every result, and measure the system's CPU."""
    submitted = [0.0] * runs
    calls = [0.0] * runs
    handles: list[object] = [None] * runs
    failures: list[BaseException] = []
    cpu_before = cpu_seconds(peer.pids())
    start = time.time()

    def submitter(first: int) -> None:
        try:
            for index in range(first, runs, submitters):
                if rate:
                    time.sleep(max(0.0, start + index / rate - time.time()))
                submitted[index] = time.time()
                began = time.perf_counter()
                handles[index] = peer.submit(index)
                calls[index] = time.perf_counter() - began
        except BaseException as error:  # re-raised below, in the caller's thread
            failures.append(error)

    threads = [threading.Thread(target=submitter, args=(k,), daemon=True) for k in range(submitters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    ended = peer.end_times(handles, timeout_s)
    return phase_result(submitted, ended, len(TASKS), cpu_seconds(peer.pids()) - cpu_before, calls)


def idle_cpu_ms_per_s(peer: Peer, seconds: float) -> float:
    """CPU the system burns with nothing to do: at low throughput it is most of a run's share."""
    before = cpu_seconds(peer.pids())
    time.sleep(seconds)
    return (cpu_seconds(peer.pids()) - before) * 1000 / seconds


def plain_phase(peer: Peer, plan: Plan, rate: float | None) -> PhaseResult:
    """The phase again without keys, in the same run: on a shared host only figures taken
    side by side compare."""
    peer.keyed = False
    try:
        return run_phase(peer, plan.light if rate else plan.saturated, rate, plan.submitters[0], plan.timeout_s)
    finally:
        peer.keyed = True


def measure(peer: Peer, plan: Plan) -> SystemFigures:
    if plan.history:
        started = time.monotonic()
        print(f"{peer.name}: history, {plan.history:,} runs", flush=True)
        peer.add_history(plan.history)
        print(f"{peer.name}: history on the log in {time.monotonic() - started:.0f}s", flush=True)
    print(f"{peer.name}: warm-up, {plan.warmup} runs", flush=True)
    submitters = plan.submitters[0]
    run_phase(peer, plan.warmup, None, submitters, plan.timeout_s)
    time.sleep(plan.settle_s)
    idle = idle_cpu_ms_per_s(peer, plan.idle_s)
    print(f"{peer.name}: idle, {idle:.0f} CPU ms/s", flush=True)
    figures = SystemFigures(saturated=[], light=[], idle_cpu_ms_per_s=idle)
    paired = plan.keyed and peer.supports_keys  # keyed phases, each next to a plain one
    for repetition in range(1, plan.repetitions + 1):
        plain_first = paired and repetition % 2 == 0  # each order in turn: no order bias
        if plain_first:
            figures.plain_saturated.append(plain_phase(peer, plan, None))
        saturated = run_phase(peer, plan.saturated, None, submitters, plan.timeout_s)
        for more in plan.submitters[1:]:
            swept = run_phase(peer, plan.saturated, None, more, plan.timeout_s)
            figures.sweep.setdefault(more, []).append(swept)
            print(f"{peer.name} #{repetition}: saturated with {more} submitters {swept.tasks_per_s:,.0f} tasks/s, "
                  f"{swept.cpu_ms_per_run:.1f} CPU ms/run", flush=True)
        if paired and not plain_first:
            figures.plain_saturated.append(plain_phase(peer, plan, None))
        if plain_first:
            figures.plain_light.append(plain_phase(peer, plan, plan.light_rate))
        light = run_phase(peer, plan.light, plan.light_rate, submitters, plan.timeout_s)
        if paired and not plain_first:
            figures.plain_light.append(plain_phase(peer, plan, plan.light_rate))
        figures.saturated.append(saturated)
        figures.light.append(light)
        print(f"{peer.name} #{repetition}: saturated {saturated.tasks_per_s:,.0f} tasks/s, "
              f"p50 {saturated.p50_ms:,.0f} ms, {saturated.cpu_ms_per_run:.1f} CPU ms/run; "
              f"light p50/p95/p99 {light.p50_ms:,.0f}/{light.p95_ms:,.0f}/{light.p99_ms:,.0f} ms, "
              f"{light.cpu_ms_per_run:.1f} CPU ms/run; submit call p99 {light.submit_p99_ms:.2f} ms "
              f"light, {saturated.submit_p99_ms:.2f} ms saturated", flush=True)
        if paired:
            plain = figures.plain_saturated[-1], figures.plain_light[-1]
            print(f"{peer.name} #{repetition} without keys: saturated {plain[0].tasks_per_s:,.0f} tasks/s; "
                  f"submit call p99 {plain[1].submit_p99_ms:.2f} ms light, {plain[0].submit_p99_ms:.2f} ms "
                  "saturated", flush=True)
    return dataclasses.replace(figures, extra={**peer.extra_figures(),
                                               "keyed": float(peer.keyed and peer.supports_keys)})


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    reason = text[0] if text else ""
    return reason if isinstance(error, PeerUnavailable) else f"{type(error).__name__}: {reason}".rstrip(": ")


def run_system(make: Callable[[Path, Path], Peer], cache_dir: Path, plan: Plan,
               public_client: bool = False) -> SystemFigures | str:
    """The figures of one system, or the one-line reason it could not run."""
    with tempfile.TemporaryDirectory(prefix="taskplane-peers-") as workdir:
        peer = make(cache_dir, Path(workdir))
        peer.keyed = plan.keyed
        if public_client or plan.keyed:  # keyed and plain phases through the same client
            peer.public_client = True  # type: ignore[attr-defined]
        try:
            started = time.monotonic()
            peer.start()
            print(f"{peer.name}: started in {time.monotonic() - started:.1f}s", flush=True)
            return measure(peer, plan)
        except Exception as error:  # reported as S_error, never dropped
            reason = one_line(error)
            print(f"{peer.name}: not measured: {reason}", flush=True)
            return reason
        finally:
            peer.stop()


def parse_systems(text: str) -> list[str]:
    systems = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in systems if name not in SYSTEMS]
    if unknown or not systems:
        raise ValueError(f"--systems: unknown system {unknown[0]!r} (one of {', '.join(SYSTEMS)})"
                         if unknown else "--systems: name at least one system")
    return systems


def parse_submitters(text: str | None) -> tuple[int, ...]:
    """``--submitters 1,8``; empty (the plan's default) when not given."""
    if text is None:
        return ()
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--submitters: not a comma-separated list of counts: {text!r}") from None
    if not counts or min(counts) < 1:
        raise ValueError("--submitters: must be at least 1")
    return tuple(dict.fromkeys(counts))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated, in this order")
    parser.add_argument("--submitters", default=None,
                        help="sequential submitter threads, a comma-separated sweep (default 1,8; --quick 1): "
                             "the first submits every phase, each other adds a saturated phase")
    parser.add_argument("--runs", type=int, default=Plan().saturated, help="runs of each saturated phase")
    parser.add_argument("--repetitions", type=int, default=Plan().repetitions)
    parser.add_argument("--chart", type=Path, default=Path(".taskplane/bench-peers.png"))
    parser.add_argument("--quick", action="store_true", help="one short repetition, for smoke checks")
    parser.add_argument("--keyed", action="store_true", help="every submit with an idempotency key")
    parser.add_argument("--client", action="store_true", help="taskplane submits through the public Client")
    parser.add_argument("--history", type=int, default=0, help="finished runs put on the log before measuring")
    args = parser.parse_args(argv)
    try:
        systems = parse_systems(args.systems)
        submitters = parse_submitters(args.submitters)
        for flag in ("runs", "repetitions"):
            if getattr(args, flag) < 1:
                raise ValueError(f"--{flag}: must be at least 1")
        if args.history < 0:
            raise ValueError("--history: must be at least 0")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    plan = QUICK if args.quick else Plan(saturated=args.runs, repetitions=args.repetitions)
    plan = dataclasses.replace(plan, submitters=submitters or plan.submitters, keyed=args.keyed,
                               history=args.history)
    install_error = ensure_python_packages()
    if install_error:
        print(f"warning: {install_error}", flush=True)
    cache_dir = StackSettings().cache_dir
    classes = peer_classes()
    results = {name: run_system(classes[name], cache_dir, plan, args.client) for name in systems}
    line = {"runs_saturated": plan.saturated, "runs_light": plan.light, "light_runs_per_s": plan.light_rate,
            "repetitions": plan.repetitions, "submitters": list(plan.submitters), "keyed": plan.keyed,
            "history": plan.history, "taskplane_client": args.client or plan.keyed,
            **summary_json(results, plan.submitters)}
    best = {name: line.get(f"{name}_tasks_per_s_best") for name in systems}
    if isinstance(best.get("taskplane"), float) and isinstance(best.get("restate"), float) and best["restate"]:
        line["capacity_ratio_taskplane_restate"] = round(best["taskplane"] / best["restate"], 2)  # type: ignore[operator]
    from bench._peers_chart import write_chart

    chart_error = write_chart(results, args.chart)
    line["chart"] = str(args.chart) if chart_error is None else None
    if chart_error:
        line["chart_error"] = chart_error
    print(json.dumps(line))


if __name__ == "__main__":
    main()
