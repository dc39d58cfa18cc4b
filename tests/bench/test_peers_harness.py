"""bench.peers without the peers: the phase runner against an in-memory system, a
peer that cannot start or fails mid-way reported as S_error, bad arguments, and the
JSON last line."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bench import peers
from bench._peers_base import Peer, wait_until
from bench._peers_install import PeerUnavailable


class InMemoryPeer(Peer):
    """Runs finish as they are submitted; each run's end time is its submit index."""

    name = "inmemory"

    def __init__(self, cache_dir: Path, workdir: Path) -> None:
        super().__init__(cache_dir, workdir)
        self.submitted: list[int] = []
        self.stopped = False
        self._lock = threading.Lock()

    def start(self) -> None:
        pass

    def submit(self, index: int) -> Any:
        with self._lock:
            self.submitted.append(index)
        return ("run", index)

    def end_times(self, handles: Sequence[Any], timeout_s: float) -> list[float]:
        return [1e12 + index for _run, index in handles]

    def stop(self) -> None:
        self.stopped = True


def test_run_phase_submits_every_run_once_from_each_submitter() -> None:
    peer = InMemoryPeer(Path("."), Path("."))
    result = peers.run_phase(peer, runs=30, rate=None, submitters=3, timeout_s=5)
    assert sorted(peer.submitted) == list(range(30))
    assert result.runs == 30
    assert result.cpu_ms_per_run == 0  # no processes: nothing to count


def test_run_phase_at_a_rate_submits_in_order() -> None:
    peer = InMemoryPeer(Path("."), Path("."))
    peers.run_phase(peer, runs=5, rate=1_000.0, submitters=1, timeout_s=5)
    assert peer.submitted == [0, 1, 2, 3, 4]


class FailingSubmit(InMemoryPeer):
    def submit(self, index: int) -> Any:
        if index == 3:
            raise ConnectionError("ingress refused")
        return super().submit(index)


def test_a_failed_submit_is_raised_in_the_caller() -> None:
    with pytest.raises(ConnectionError, match="ingress refused"):
        peers.run_phase(FailingSubmit(Path("."), Path(".")), runs=10, rate=None, submitters=2, timeout_s=5)


class CrashingServer(InMemoryPeer):
    """A server process that exits at once, the way a missing binary or a taken port does."""

    name = "crashing"

    def start(self) -> None:
        server = self.launch("server", [sys.executable, "-c",
                                        "import sys; print('bind: address already in use'); sys.exit(3)"])
        wait_until(lambda: False, 60, "server", [server])

    def stop(self) -> None:
        Peer.stop(self)
        self.stopped = True


def test_a_peer_whose_process_dies_is_reported_with_its_last_log_line(tmp_path: Path) -> None:
    reason = peers.run_system(CrashingServer, tmp_path, peers.QUICK)
    assert reason == "server exited with 3: bind: address already in use"


def test_a_peer_failing_while_measured_is_reported_and_stopped(tmp_path: Path) -> None:
    made: list[FailingSubmit] = []

    def make(cache_dir: Path, workdir: Path) -> FailingSubmit:
        made.append(FailingSubmit(cache_dir, workdir))
        return made[-1]

    reason = peers.run_system(make, tmp_path, peers.QUICK)
    assert reason == "ConnectionError: ingress refused"
    assert made[0].stopped


def test_bad_systems_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        peers.main(["--systems", "taskplane,temporal"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --systems: unknown system 'temporal' (one of taskplane, restate, celery, dbos)"]


def test_submitters_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        peers.main(["--submitters", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --submitters: must be at least 1"


def test_submitters_is_a_sweep_of_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert peers.parse_submitters("1,8") == (1, 8)
    assert peers.parse_submitters("8, 1, 8") == (8, 1)
    assert peers.parse_submitters(None) == ()
    with pytest.raises(SystemExit) as exit_info:
        peers.main(["--submitters", "1,x"])
    assert exit_info.value.code == 2
    assert "--submitters: not a comma-separated list of counts" in capsys.readouterr().err


def test_last_line_is_json_with_figures_and_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    class Unavailable(InMemoryPeer):
        def start(self) -> None:
            raise PeerUnavailable("npm not found: install Node.js to get @restatedev/restate-server")

    monkeypatch.setattr(peers, "peer_classes", lambda: {"taskplane": InMemoryPeer, "restate": Unavailable})
    monkeypatch.setattr(peers, "ensure_python_packages", lambda: None)
    monkeypatch.setattr(peers, "QUICK", dataclasses.replace(peers.QUICK, light=5, idle_s=0.01, settle_s=0.0))
    monkeypatch.setenv("TASKPLANE_CACHE_DIR", str(tmp_path))
    peers.main(["--systems", "taskplane,restate", "--quick", "--chart", str(tmp_path / "chart.png")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["restate_error"] == "npm not found: install Node.js to get @restatedev/restate-server"
    for key in ("tasks_per_s", "p50_ms_light", "p99_ms_light", "cpu_ms_per_run", "idle_cpu_ms_per_s"):
        assert f"taskplane_{key}" in line
    assert line["runs_saturated"] == peers.QUICK.saturated
    assert line["chart"] == str(tmp_path / "chart.png") or "chart_error" in line
    if line["chart"]:
        assert (tmp_path / "chart.png").stat().st_size > 0


def test_hop_refuses_no_probes_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import hop

    with pytest.raises(SystemExit) as exit_info:
        hop.main(["--probes", "0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --probes: must be at least 1"


def test_keyed_phases_are_paired_with_plain_ones_and_submit_calls_are_timed(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[bool] = []

    class KeyedPeer(InMemoryPeer):
        supports_keys = True

        def submit(self, index: int) -> Any:
            seen.append(self.keyed)
            return super().submit(index)

    monkeypatch.setattr(peers, "peer_classes", lambda: {"taskplane": KeyedPeer, "celery": InMemoryPeer})
    monkeypatch.setattr(peers, "ensure_python_packages", lambda: None)
    monkeypatch.setattr(peers, "QUICK", dataclasses.replace(peers.QUICK, warmup=2, saturated=6, light=3, idle_s=0.01, settle_s=0.0))
    monkeypatch.setenv("TASKPLANE_CACHE_DIR", str(tmp_path))
    peers.main(["--systems", "taskplane,celery", "--quick", "--keyed", "--chart", str(tmp_path / "chart.png")])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["keyed"] is True and line["taskplane_keyed"] is True and line["celery_keyed"] is False
    assert seen.count(False) == 6 + 3 and seen.count(True) == 2 + 6 + 3  # warm-up keyed, each phase twice
    for key in ("submit_p99_ms", "submit_p99_ms_saturated", "tasks_per_s_plain", "submit_p99_ms_plain"):
        assert line[f"taskplane_{key}"] >= 0
    assert "celery_tasks_per_s_plain" not in line
