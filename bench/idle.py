"""Where the idle and light-load CPU of bench.peers' taskplane stack goes: the same stack
(a broker, orchestrator, breaker, 2 workers, the harness's submitter and result reader),
warmed up, then CPU per process (and per broker thread group) over an idle window and
over a light phase (runs/s as bench.peers' light phase). With ``--requests`` the broker
also logs every request (kafka.request.logger at DEBUG: its own cost inflates the broker's
CPU, so take CPU figures from a run without it) and the JSON gives requests per second by
API and by the process whose connection sent it.

    python -m bench.idle [--idle-s 20] [--light 200] [--requests]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._peers_stats import process_tree
from taskplane.devstack import kafka as devkafka
from taskplane.streams.settings import StackSettings

_REQUEST_LOG = """
appender.req.type = File
appender.req.name = REQ
appender.req.fileName = {log}.requests
appender.req.layout.type = PatternLayout
appender.req.layout.pattern = %m%n
logger.request.name = kafka.request.logger
logger.request.level = DEBUG
logger.request.additivity = false
logger.request.appenderRef.req.ref = REQ
"""
_API = re.compile(r'"requestApiKeyName":"(\w+)"|"requestApiKey":(\d+)')
_PEER = re.compile(r'"clientHost":"/?([\d.]+)"|"clientPort":(\d+)|"connection":"[\d.]+:\d+-([\d.]+):(\d+)')


def _ticks(pid: int) -> dict[str, int]:
    """CPU ticks of ``pid``'s tree (this process alone: the others are its children):
    ``"": the processes' own total`` (/proc/PID/stat: it keeps the time of threads that
    have exited, such as the JVM's C1 compiler threads, which come and go), and by
    ``thread name (digits dropped)/tid``, so that a thread that exits (or a new one of the
    same name) moves no other thread's figure."""
    out: dict[str, int] = collections.Counter()
    for member in process_tree([pid]) if pid != os.getpid() else [pid]:
        try:
            fields = _fields(Path(f"/proc/{member}/stat").read_text())
        except OSError:
            continue
        out[""] += sum(int(value) for value in fields[11:15 if member != os.getpid() else 13])
        for task in Path(f"/proc/{member}/task").glob("*"):
            try:
                stat = (task / "stat").read_text()
            except OSError:
                continue
            name = re.sub(r"[\d-]+$", "", stat[stat.index("(") + 1:stat.rindex(")")])
            out[f"{name}/{task.name}"] += sum(int(value) for value in _fields(stat)[11:13])
    return out


def _fields(stat: str) -> list[str]:
    return stat.rsplit(")", 1)[1].split()


def snapshot(pids: dict[str, int]) -> dict[str, dict[str, int]]:
    return {name: _ticks(pid) for name, pid in pids.items()}


def per_second(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]], seconds: float,
               per: float = 1.0) -> dict[str, Any]:
    """CPU ms per ``per`` (second or run) by process (its /proc total) and by thread name;
    ``exited`` is the rest of a process's time: threads that ended within the window (the
    JVM's C1 compiler threads), and rounding (/proc counts each thread in whole ticks: a
    worker's 30 threads, most of them woken briefly, lose ~2 ms/s that way; no thread of
    theirs ended)."""
    scale = 1000 / os.sysconf("SC_CLK_TCK") / seconds / per
    totals = {name: (after[name][""] - before[name].get("", 0)) * scale for name in after}
    threads: dict[str, float] = collections.defaultdict(float)
    for name, by_thread in after.items():
        for key, ticks in by_thread.items():
            if key:
                threads[f"{name}:{key.rsplit('/', 1)[0]}"] += (ticks - before[name].get(key, 0)) * scale
        exited = totals[name] - sum(v for k, v in threads.items() if k.startswith(f"{name}:"))
        if exited >= 0.5:
            threads[f"{name}:exited"] += exited
    # bench.peers' idle figure is the stack's without the harness (its result reader).
    stack = sum(v for k, v in totals.items() if k != "harness")
    return {"total": round(sum(totals.values()), 1), "stack": round(stack, 1), **{k: round(v, 1) for k, v in totals.items()},
            "threads": {k: round(v, 1) for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v >= 0.5}}


def port_owners(pids: dict[str, int]) -> dict[int, str]:
    """Local TCP port -> process name, for every connection of the stack's processes."""
    owners: dict[int, str] = {}
    tree = {member: name for name, pid in pids.items()
            for member in (process_tree([pid]) if pid != os.getpid() else [pid])}
    listing = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        match = re.search(r"pid=(\d+)", line)
        if len(fields) >= 4 and match and int(match.group(1)) in tree:
            owners[int(fields[3].rsplit(":", 1)[1])] = tree[int(match.group(1))]
    return owners


def count_requests(log: Path, start: int, owners: dict[int, str], seconds: float) -> dict[str, float]:
    counts: collections.Counter[str] = collections.Counter()
    with log.open() as lines:
        lines.seek(start)
        for line in lines:
            api = _API.search(line)
            port = re.search(r'"clientPort":(\d+)|-127\.0\.0\.1:(\d+)-', line)
            name = (api.group(1) or api.group(2)) if api else "?"
            owner = owners.get(int(port.group(1) or port.group(2)), "?") if port else "?"
            counts[f"{owner}:{name}"] += 1
    return {key: round(value / seconds, 1) for key, value in counts.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--light", type=int, default=200, help="runs of the light phase (0: none)")
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--requests", action="store_true")
    args = parser.parse_args()
    if args.requests:
        devkafka._LOG4J2 += _REQUEST_LOG  # noqa: SLF001  (a measuring aid only)
    from bench._peer_taskplane import TaskplanePeer
    from bench.peers import run_phase

    with tempfile.TemporaryDirectory(prefix="taskplane-idle-") as workdir:
        peer = TaskplanePeer(StackSettings().cache_dir, Path(workdir))
        try:
            peer.start()
            run_phase(peer, 40, None, 1, 120)
            time.sleep(3)
            assert peer._kafka is not None  # noqa: SLF001
            pids = {"broker": peer._kafka.pid, **{s.name: s.pid for s in peer._processes},  # noqa: SLF001
                    "harness": os.getpid()}
            requests_log = Path(workdir) / "kafka" / "server.log.requests"
            owners = port_owners(pids)
            offset = requests_log.stat().st_size if args.requests else 0
            before, began = snapshot(pids), time.monotonic()
            time.sleep(args.idle_s)
            after, seconds = snapshot(pids), time.monotonic() - began
            result: dict[str, Any] = {"idle_cpu_ms_per_s": per_second(before, after, seconds)}
            if args.requests:
                result["idle_requests_per_s"] = count_requests(requests_log, offset, owners, seconds)
            if args.light:
                offset = requests_log.stat().st_size if args.requests else 0
                before, began = snapshot(pids), time.monotonic()
                phase = run_phase(peer, args.light, args.rate, 1, 120)
                after, seconds = snapshot(pids), time.monotonic() - began
                result["light_cpu_ms_per_run"] = per_second(before, after, 1.0, per=args.light)
                result["light_p50_ms"], result["light_p99_ms"] = round(phase.p50_ms, 1), round(phase.p99_ms, 1)
                if args.requests:
                    result["light_requests_per_run"] = {
                        k: round(v * seconds / args.light, 2)
                        for k, v in count_requests(requests_log, offset, owners, seconds).items()}
        finally:
            peer.stop()
    result["loadavg"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
