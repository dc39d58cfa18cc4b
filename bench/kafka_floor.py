"""The floor of exactly-once on this broker: the least a run costs in a pipeline that
keeps taskplane's guarantees with Kafka transactions, next to Restate (and taskplane) in
the same run.

    python -m bench.kafka_floor [--quick] [--variants eos,eos+changelog,at-least-once]
                                [--peers restate,taskplane] [--runs 300] [--saturated 1000]

The pipeline (bench/_floor_roles.py, plain confluent-kafka, no taskplane runtime): a
client submits each run to ``in`` and reads its result from ``out``; a processor P
grants it on ``work`` and turns its completion on ``done`` into the result, in Kafka
transactions; a worker W completes the one task. Per variant, on a fresh broker started
as bench.peers' taskplane stack starts it (LocalKafka: same JVM flags and properties):
the bare broker's idle CPU before any client, a warm-up, idle CPU over ``idle_s``, a
light phase at 20 runs/s (CPU per process from /proc as bench.idle, latency as
bench.peers: submit to the task's own end; ``result`` latency: to the client reading
the result), then the broker's requests per run over a second light phase with the
request log switched on (its cost would inflate the CPU figures). Then bench.peers'
Restate (and taskplane) harness: warm-up, idle, the same light phase. Progress on
stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import _floor_roles as roles
from bench import idle
from bench._peers_base import Peer, python_module, wait_until
from bench._peers_stats import cpu_seconds
from bench.peers import idle_cpu_ms_per_s, run_phase
from taskplane.devstack import kafka as devkafka
from taskplane.streams.settings import StackSettings


@dataclass(frozen=True, slots=True)
class Plan:
    warmup: int = 200
    light: int = 300
    rate: float = 20.0
    idle_s: float = 10.0
    settle_s: float = 5.0
    requests_runs: int = 100  # 0: no request count
    saturated: int = 1_000  # 0: no saturated phase (eos and the peers, 1 and 8 submitters)
    fresh_broker: bool = True  # a broker per variant (each as warm as the others)
    timeout_s: float = 300.0


QUICK = Plan(warmup=20, light=100, idle_s=2.0, settle_s=0.5, requests_runs=0, saturated=0, fresh_broker=False,
             timeout_s=60.0)


_BEGAN = time.monotonic()


def say(text: str) -> None:
    print(f"kafka_floor {time.monotonic() - _BEGAN:5.0f}s: {text}", file=sys.stderr, flush=True)


def key(variant: str) -> str:
    return variant.replace("+", "_").replace("-", "_")


class FloorPeer(Peer):
    """The minimal pipeline as a bench.peers system (so its phases are bench.peers'
    own): P and W processes against ``kafka``; the broker is the caller's."""

    def __init__(self, workdir: Path, variant: str, kafka: dict[str, Any], broker_pid: int | None) -> None:
        super().__init__(workdir, workdir)
        self.name, self.variant, self.kafka, self.broker_pid = f"floor-{variant}", variant, kafka, broker_pid
        self.prefix = f"floor{uuid.uuid4().hex[:6]}"
        self.client: roles.FloorClient | None = None

    def start(self) -> None:
        roles.create_topics(self.kafka, self.prefix)
        common = ["--bootstrap", self.kafka["bootstrap.servers"], "--prefix", self.prefix]
        services = [self.launch("processor", python_module("bench._floor_roles", "processor", *common,
                                                           "--variant", self.variant)),
                    self.launch("worker", python_module("bench._floor_roles", "worker", *common))]
        self.client = roles.FloorClient(self.kafka, self.prefix)
        probe = self.submit(-1)
        wait_until(lambda: probe in self.client.ends, 120, f"{self.name}'s first run", services)  # type: ignore[union-attr]

    def pids(self) -> list[int]:
        return [*super().pids(), *([self.broker_pid] if self.broker_pid else [])]

    def named_pids(self) -> dict[str, int]:
        """For bench.idle's per-process accounting; ``harness`` is this process: the client."""
        broker = {"broker": self.broker_pid} if self.broker_pid else {}
        return {**broker, **{s.name: s.pid for s in self._processes}, "harness": os.getpid()}

    def submit(self, index: int) -> str:
        assert self.client is not None
        return self.client.submit(index)

    def end_times(self, handles: Sequence[Any], timeout_s: float) -> list[float]:
        assert self.client is not None
        return [end for end, _read in self.client.wait(handles, timeout_s)]

    def stop(self) -> None:
        super().stop()
        if self.client is not None:
            self.client.close()
            self.client = None


# Kafka's API keys (the request log names some by number): what a run's requests are.
API_NAMES = {"0": "Produce", "1": "Fetch", "3": "Metadata", "8": "OffsetCommit", "9": "OffsetFetch",
             "10": "FindCoordinator", "22": "InitProducerId", "24": "AddPartitionsToTxn", "25": "AddOffsetsToTxn",
             "26": "EndTxn", "27": "WriteTxnMarkers", "28": "TxnOffsetCommit", "68": "ConsumerGroupHeartbeat"}


class RequestLog:
    """The broker's request log, on only while requests are counted: the appender is
    configured at start (at INFO: silent) and its level switched with Kafka's own
    ConfigCommand (broker loggers are dynamic config)."""

    APPENDER = idle._REQUEST_LOG.replace("logger.request.level = DEBUG", "logger.request.level = INFO")  # noqa: SLF001

    def __init__(self, broker: devkafka.LocalKafka) -> None:
        self.broker = broker
        self.path = broker.data_dir / "server.log.requests"

    def level(self, level: str) -> None:
        libs = devkafka.kafka_libs(self.broker.version, self.broker.cache_dir)
        subprocess.run([devkafka.require_java(), "-Xmx128m", "-cp", f"{libs}/*", "kafka.admin.ConfigCommand",
                        "--bootstrap-server", self.broker.bootstrap_servers, "--alter", "--entity-type",
                        "broker-loggers", "--entity-name", "1", "--add-config", f"kafka.request.logger={level}"],
                       check=True, capture_output=True, timeout=60)

    def count(self, peer: FloorPeer, runs: int, rate: float, timeout_s: float) -> dict[str, float]:
        """Requests per run by ``process:API`` over a light phase (``?``: the broker's own)."""
        owners = idle.port_owners(peer.named_pids())
        self.level("DEBUG")
        try:
            offset = self.path.stat().st_size if self.path.exists() else 0
            began = time.monotonic()
            run_phase(peer, runs, rate, 1, timeout_s)
            time.sleep(0.5)  # the last commit's markers
            seconds = time.monotonic() - began
        finally:
            self.level("INFO")
        per_s = idle.count_requests(self.path, offset, owners, seconds)
        named = {}
        for name, value in per_s.items():
            owner, _, api = name.partition(":")
            named[f"{owner}:{API_NAMES.get(api, api)}"] = round(value * seconds / runs, 2)
        return named


def window(pids: dict[str, int], seconds: float) -> dict[str, Any]:
    before, began = idle.snapshot(pids), time.monotonic()
    time.sleep(seconds)
    return idle.per_second(before, idle.snapshot(pids), time.monotonic() - began)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def measure_floor(peer: FloorPeer, plan: Plan, requests: RequestLog | None = None) -> dict[str, Any]:
    """One variant's figures (``peer`` not yet started; stopped by the caller)."""
    k, out = f"floor_{key(peer.variant)}", {}
    peer.start()
    run_phase(peer, plan.warmup, None, 1, plan.timeout_s)
    time.sleep(plan.settle_s)
    pids = peer.named_pids()
    quiet = window(pids, plan.idle_s)
    out[f"{k}_idle_cpu_ms_per_s"], out[f"{k}_stack_idle_cpu_ms_per_s"] = quiet["total"], quiet["stack"]
    out[f"{k}_broker_idle_cpu_ms_per_s"] = quiet.get("broker", 0.0)
    out[f"{k}_idle_loadavg"] = load()
    say(f"{peer.variant}: idle {quiet['total']} CPU ms/s (broker {quiet.get('broker', 0.0)}), load {load()}")
    if plan.saturated:  # before the light phase, as in bench.peers (a broker as warm as there)
        out.update(saturated(peer, plan, k))
    before = idle.snapshot(pids)
    phase = run_phase(peer, plan.light, plan.rate, 1, plan.timeout_s)
    cpu = idle.per_second(before, idle.snapshot(pids), 1.0, per=plan.light)
    assert peer.client is not None
    client = peer.client
    result_ms = sorted((client.ends[run][1] - at) * 1000 for run, at in list(client.submitted.items())[-plan.light:])
    out.update({f"{k}_cpu_ms_per_run_light": cpu["total"], f"{k}_stack_cpu_ms_per_run_light": cpu["stack"],
                f"{k}_broker_cpu_ms_per_run_light": cpu.get("broker", 0.0),
                f"{k}_cpu_ms_per_run_light_by_process": {n: cpu[n] for n in pids},
                f"{k}_p50_ms_light": round(phase.p50_ms, 1), f"{k}_p99_ms_light": round(phase.p99_ms, 1),
                f"{k}_result_p50_ms_light": round(_pct(result_ms, 0.5), 1),
                f"{k}_result_p99_ms_light": round(_pct(result_ms, 0.99), 1), f"{k}_light_loadavg": load()})
    say(f"{peer.variant}: light {cpu['total']} CPU ms/run (broker {cpu.get('broker', 0.0)}), "
        f"p50/p99 {phase.p50_ms:.1f}/{phase.p99_ms:.1f} ms, load {load()}")
    if requests is not None and plan.requests_runs:
        counted = requests.count(peer, plan.requests_runs, plan.rate, plan.timeout_s)
        out[f"{k}_requests_per_run_light"] = round(sum(counted.values()), 1)
        out[f"{k}_transactions_per_run_light"] = round(sum(v for n, v in counted.items() if n.endswith(":EndTxn")), 2)
        out[f"{k}_requests_per_run_by_api"] = dict(list(counted.items())[:14])
        say(f"{peer.variant}: {out[f'{k}_requests_per_run_light']} broker requests a run")
    return out


def _pct(values: Sequence[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def saturated(peer: Peer, plan: Plan, k: str) -> dict[str, Any]:
    """Runs a second back to back, best of 1 and 8 sequential submitters (bench.peers'
    capacity figure; a run of Restate or taskplane is 4 tasks, the floor's 1)."""
    by = {}
    for submitters in (1, 8):
        phase = run_phase(peer, plan.saturated, None, submitters, plan.timeout_s)
        by[str(submitters)] = round(phase.tasks_per_s / 4, 1)  # run_phase counts 4 tasks a run
        say(f"{k}: saturated, {submitters} submitters: {by[str(submitters)]} runs/s, "
            f"{phase.cpu_ms_per_run:.1f} CPU ms/run, load {load()}")
    return {f"{k}_runs_per_s_by_submitters": by, f"{k}_runs_per_s_best": max(by.values())}


def measure_peer(name: str, make: Callable[[Path, Path], Peer], plan: Plan) -> dict[str, Any]:
    """bench.peers' harness for one system: warm-up, idle, the light phase."""
    with tempfile.TemporaryDirectory(prefix="taskplane-floor-") as workdir:
        peer = make(StackSettings().cache_dir, Path(workdir))
        try:
            peer.start()
            run_phase(peer, plan.warmup, None, 1, plan.timeout_s)
            time.sleep(plan.settle_s)
            broker = getattr(peer, "_kafka", None)
            broker_pids = [broker.pid] if broker is not None and broker.pid else []
            broker_before = cpu_seconds(broker_pids)
            out: dict[str, Any] = {f"{name}_idle_cpu_ms_per_s": round(idle_cpu_ms_per_s(peer, plan.idle_s), 1)}
            if broker_pids:
                out[f"{name}_broker_idle_cpu_ms_per_s"] = round((cpu_seconds(broker_pids) - broker_before) * 1000
                                                                / plan.idle_s, 1)
            out[f"{name}_idle_loadavg"] = load()
            if plan.saturated:
                out.update(saturated(peer, plan, name))
            broker_before = cpu_seconds(broker_pids)
            light = run_phase(peer, plan.light, plan.rate, 1, plan.timeout_s)
            out.update({f"{name}_cpu_ms_per_run_light": round(light.cpu_ms_per_run, 1),
                        f"{name}_p50_ms_light": round(light.p50_ms, 1), f"{name}_p99_ms_light": round(light.p99_ms, 1),
                        f"{name}_light_loadavg": load()})
            if broker_pids:
                out[f"{name}_broker_cpu_ms_per_run_light"] = round((cpu_seconds(broker_pids) - broker_before)
                                                                   * 1000 / plan.light, 1)
            say(f"{name}: idle {out[f'{name}_idle_cpu_ms_per_s']} CPU ms/s, light {light.cpu_ms_per_run:.1f} "
                f"CPU ms/run, p50/p99 {light.p50_ms:.1f}/{light.p99_ms:.1f} ms, load {load()}")
            return out
        except Exception as error:  # reported as S_error, never dropped
            say(f"{name}: not measured: {error}")
            return {f"{name}_error": str(error).splitlines()[0] if str(error) else type(error).__name__}
        finally:
            peer.stop()


def broker_idle(broker: devkafka.LocalKafka, plan: Plan) -> float:
    """A broker's CPU ms/s with no client connected (after ``settle_s``)."""
    time.sleep(plan.settle_s)
    assert broker.pid
    return float(window({"broker": broker.pid}, plan.idle_s)["broker"])


def measure_variants(variants: Sequence[str], plan: Plan, count_requests: bool) -> dict[str, Any]:
    """Each variant on its broker (a fresh one each unless ``plan.fresh_broker`` is off);
    ``bare_broker_idle``: before any client, and again once the variant's clients left."""
    out: dict[str, Any] = {}
    fresh: list[float] = []
    after: list[float] = []
    with tempfile.TemporaryDirectory(prefix="taskplane-floor-") as tmp, contextlib.ExitStack() as brokers:
        broker: devkafka.LocalKafka | None = None
        for number, variant in enumerate(variants):
            if broker is None or plan.fresh_broker:
                if broker is not None:
                    broker.stop()
                broker = brokers.enter_context(devkafka.LocalKafka(Path(tmp) / f"kafka-{number}",
                                                                   cache_dir=StackSettings().cache_dir))
                fresh.append(broker_idle(broker, plan))
                say(f"bare broker: idle {fresh[-1]} CPU ms/s, load {load()}")
            (Path(tmp) / variant).mkdir()
            peer = FloorPeer(Path(tmp) / variant, variant, {"bootstrap.servers": broker.bootstrap_servers}, broker.pid)
            try:
                out.update(measure_floor(peer, plan, RequestLog(broker) if count_requests else None))
            except Exception as error:  # reported as floor_V_error, never dropped
                say(f"{variant}: not measured: {error}")
                out[f"floor_{key(variant)}_error"] = str(error).splitlines()[0] if str(error) else type(error).__name__
            finally:
                peer.stop()
            if plan.fresh_broker:
                after.append(broker_idle(broker, plan))
                say(f"broker after {variant}'s clients left: idle {after[-1]} CPU ms/s")
    out["bare_broker_idle_cpu_ms_per_s"] = round(statistics.median(fresh), 1)
    if after:
        out["bare_broker_idle_cpu_ms_per_s_after_clients"] = round(statistics.median(after), 1)
    out["bare_broker_idle_each"] = {"fresh": fresh, "after_clients": after}
    return out


def ratios(line: dict[str, Any]) -> dict[str, float]:
    """The comparisons the conclusion rests on, where both sides were measured."""
    pairs = {"floor_eos_stack_over_restate_cpu_light": ("floor_eos_stack_cpu_ms_per_run_light",
                                                        "restate_cpu_ms_per_run_light"),
             "floor_eos_broker_over_restate_cpu_light": ("floor_eos_broker_cpu_ms_per_run_light",
                                                         "restate_cpu_ms_per_run_light"),
             "taskplane_over_floor_eos_changelog_cpu_light": ("taskplane_cpu_ms_per_run_light",
                                                              "floor_eos_changelog_stack_cpu_ms_per_run_light"),
             "taskplane_over_floor_eos_changelog_idle": ("taskplane_idle_cpu_ms_per_s",
                                                         "floor_eos_changelog_stack_idle_cpu_ms_per_s"),
             "floor_eos_stack_over_restate_idle": ("floor_eos_stack_idle_cpu_ms_per_s", "restate_idle_cpu_ms_per_s")}
    return {name: round(line[a] / line[b], 2) for name, (a, b) in pairs.items()
            if isinstance(line.get(a), float) and isinstance(line.get(b), float) and line[b]}


def parse_list(text: str, allowed: Sequence[str], flag: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown:
        raise ValueError(f"{flag}: unknown {unknown[0]!r} (one of {', '.join(allowed)})")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases, one broker, no request count")
    parser.add_argument("--variants", default=",".join(roles.VARIANTS))
    parser.add_argument("--peers", default=None, help="bench.peers systems beside the floor "
                        "(default restate,taskplane; --quick restate; empty: none)")
    parser.add_argument("--runs", type=int, default=None, help="runs of each light phase (300; --quick 100)")
    parser.add_argument("--saturated", type=int, default=None, help="runs of each saturated phase (0: none)")
    parser.add_argument("--no-requests", action="store_true", help="skip the request count")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    try:
        variants = parse_list(args.variants, roles.VARIANTS, "--variants")
        peers = parse_list(args.peers if args.peers is not None else ("restate" if args.quick else "restate,taskplane"),
                           ("restate", "taskplane"), "--peers")
        for flag in ("runs", "saturated"):
            if (getattr(args, flag) or 0) < 0 or getattr(args, flag) == 0 and flag == "runs":
                raise ValueError(f"--{flag}: must be at least {1 if flag == 'runs' else 0}")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    plan = replace(plan, light=args.runs or plan.light,
                   saturated=plan.saturated if args.saturated is None else args.saturated,
                   requests_runs=0 if args.no_requests else plan.requests_runs)
    count_requests = bool(plan.requests_runs)
    if count_requests:  # the request log's appender, silent until switched on
        devkafka._LOG4J2 += RequestLog.APPENDER  # noqa: SLF001  (a measuring aid only)
    started = time.monotonic()
    line: dict[str, Any] = {"runs_light": plan.light, "light_runs_per_s": plan.rate, "idle_s": plan.idle_s,
                            "variants": variants, "loadavg_start": load(), "tasks_per_run_floor": 1}
    line.update(measure_variants(variants, plan, count_requests))
    from bench.peers import peer_classes

    classes = peer_classes()
    for name in peers:
        line.update(measure_peer(name, classes[name], plan))
    line.update(ratios(line))
    line["loadavg_end"], line["seconds"] = load(), round(time.monotonic() - started)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
