"""Getting the peers onto this machine: the ``peers`` extra's Python packages (pip),
the Restate server (the npm package, under the cache dir), Debian's redis-server
(apt-get when missing and root). Each failure is a PeerUnavailable with one line
saying what is missing and how to get it."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESTATE_VERSION = "1.7.12"
# import name -> what provides it (a requirement of the ``peers`` extra)
MODULES = {"restate": "restate-sdk", "hypercorn": "hypercorn", "celery": "celery[redis]", "redis": "celery[redis]",
           "dbos": "dbos", "matplotlib": "matplotlib"}


class PeerUnavailable(Exception):
    """A peer that cannot be installed or started; str() is the one-line reason."""


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


def peers_extra() -> list[str]:
    """The requirements of the ``peers`` optional dependency in pyproject.toml."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return list(data["project"]["optional-dependencies"]["peers"])


def missing_modules(modules: list[str]) -> list[str]:
    return [name for name in modules if importlib.util.find_spec(name) is None]


def ensure_python_packages() -> str | None:
    """pip-install the ``peers`` extra when any of its modules is missing. Returns None,
    or why it failed (each peer then reports its own missing module)."""
    if not missing_modules(list(MODULES)):
        return None
    print("installing the peers extra: " + " ".join(peers_extra()), flush=True)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *peers_extra()],
                          capture_output=True, text=True)
    importlib.invalidate_caches()
    return None if done.returncode == 0 else f"pip install failed: {_last_line(done.stderr)}"


def require_modules(*modules: str) -> None:
    missing = missing_modules(list(modules))
    if missing:
        wanted = sorted({MODULES.get(name, name) for name in missing})
        raise PeerUnavailable(f"Python module(s) {', '.join(missing)} missing: pip install {' '.join(wanted)} "
                              "(or the taskplane[peers] extra)")


def restate_server(cache_dir: Path, version: str = RESTATE_VERSION) -> Path:
    """The restate-server binary of the npm package, installed under ``cache_dir``."""
    prefix = cache_dir / "peers" / f"restate-server-{version}"
    arch = {"x86_64": "x64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
    binary = prefix / "node_modules" / "@restatedev" / f"restate-server-linux-{arch}" / "bin" / "restate-server"
    if binary.exists():
        return binary
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable("npm not found: install Node.js to get @restatedev/restate-server")
    print(f"installing @restatedev/restate-server@{version} under {prefix}", flush=True)
    prefix.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--silent",
                           f"@restatedev/restate-server@{version}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise PeerUnavailable(f"npm install @restatedev/restate-server failed: {_last_line(done.stderr)}")
    if not binary.exists():
        raise PeerUnavailable(f"npm installed @restatedev/restate-server but there is no {binary}")
    return binary


def redis_server() -> str:
    """Debian's redis-server: the one on PATH, else apt-get installs it when we are root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PeerUnavailable("redis-server not found: apt-get install redis-server (needs root)")
    print("installing Debian's redis-server", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise PeerUnavailable(f"{' '.join(command[:2])} failed: {_last_line(done.stderr)}")
    found = shutil.which("redis-server")
    if found is None:
        raise PeerUnavailable("apt-get installed redis-server but it is not on PATH")
    return found
