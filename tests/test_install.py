"""The package as a user gets it: ``python -m build`` makes the sdist and, from it, the
wheel; the wheel goes into a fresh venv outside the checkout, and from a project
directory of its own (the files docs/client.md shows) that venv validates and applies
a manifest, runs the orchestrator and a worker, waits for a run with ``taskplane
submit --wait`` and runs the doc's client example, against the session's broker.
Slow (a build and an install): marked ``install``."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.install, pytest.mark.timeout(1800)]  # a build on a busy machine
ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "client.md"


def doc_files() -> dict[str, str]:
    """The files docs/client.md shows, by name: each block that starts ``# NAME``."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", DOC.read_text(), re.DOTALL)
    return {block.split("\n", 1)[0][2:].strip(): block for block in blocks if block.startswith("# ")}


# What an install must hold beyond modules: printed line by line by the venv's python.
INSPECT = """
import importlib.util, taskplane
from taskplane._examples import DOCUMENTS, manifest_path
from taskplane.processors.projector.schema import migration_files
print(taskplane.__file__)
print([n for n in ('streams', 'processors', 'workers', 'examples', 'bench') if importlib.util.find_spec(n)])
print(len(migration_files()))
print(manifest_path('payment-processor').is_file() and any(DOCUMENTS.iterdir()))
"""


def _run(command: list[str], what: str, timeout_s: float, **kwargs: object) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs)  # type: ignore[call-overload]
    if done.returncode != 0:
        pytest.fail(f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}", pytrace=False)
    return done


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with nothing but the built wheel and its dependencies."""
    dist = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], "python -m build", 900)
    wheels = list(dist.glob("taskplane-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("taskplane-*.tar.gz")), sorted(p.name for p in dist.iterdir())
    target = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(target)], "venv", 120)
    _run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "--quiet",
          str(wheels[0])], "pip install of the wheel", 900)
    return target


@pytest.fixture
def project(tmp_path: Path, venv: Path, kafka_bootstrap: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """A user's project directory (outside the checkout) and the environment its
    commands run in: the venv's bin first, no path into the checkout."""
    for name, text in doc_files().items():
        (tmp_path / name).write_text(text)
    env = {name: value for name, value in os.environ.items()
           if name not in ("PYTHONPATH", "VIRTUAL_ENV") and not name.startswith("TASKPLANE_")}
    env.update({"PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
                "TASKPLANE_BOOTSTRAP_SERVERS": kafka_bootstrap,
                "TASKPLANE_TOPIC_PREFIX": f"t-install-{uuid.uuid4().hex[:8]}",
                "TASKPLANE_METRICS_PORT": "0", "PYTHONUNBUFFERED": "1"})
    yield tmp_path, env


def test_the_wheel_validates_applies_and_runs_a_system(project: tuple[Path, dict[str, str]], venv: Path) -> None:
    directory, env = project
    taskplane = str(venv / "bin" / "taskplane")

    def cli(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        return _run([taskplane, *args], f"taskplane {' '.join(args)}", timeout_s, cwd=directory, env=env)

    assert cli("--version").stdout.strip() == f"taskplane {version('taskplane')}"
    where = _run([str(venv / "bin" / "python"), "-c", INSPECT], "import", 60, cwd=directory, env=env).stdout.splitlines()
    assert where[0].startswith(str(venv)) and where[1] == "[]"  # the installed copy; no generic top-level names
    assert where[2] != "0" and where[3] == "True"  # data read at runtime: read-model migrations, the demo's systems

    assert "greet" in cli("validate", "-f", "system.yaml").stdout
    assert "applied hello" in cli("apply", "-f", "system.yaml").stdout

    logs = {name: open(directory / f"{name}.log", "w") for name in ("orchestrator", "worker")}  # noqa: SIM115
    processes = [
        subprocess.Popen([taskplane, "processor", "run", "orchestrator", "--instance", "install-0"], cwd=directory,
                         env=env, stdout=logs["orchestrator"], stderr=subprocess.STDOUT),
        subprocess.Popen([taskplane, "worker", "run", "--system", "hello", "--module", "tools.py"], cwd=directory,
                         env=env, stdout=logs["worker"], stderr=subprocess.STDOUT),
    ]
    try:
        done = subprocess.run([taskplane, "submit", "--system", "hello", "--input", '{"name": "wheel"}', "--wait",
                               "--timeout", "300"], cwd=directory, env=env, capture_output=True, text=True,
                              timeout=360, check=False)
        assert done.returncode == 0, (done.stdout, done.stderr, {n: (directory / f"{n}.log").read_text()[-2000:]
                                                                 for n in logs})
        assert json.loads(done.stdout) == {"greet": {"greeting": "HELLO, WHEEL"}}
        example = _run([str(venv / "bin" / "python"), "client_example.py"], "docs/client.md's example", 600,
                       cwd=directory, env=env).stdout
        assert "HELLO, WORLD" in example and "RunSucceeded" in example and "100 runs done" in example
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in logs.values():
            log.close()
