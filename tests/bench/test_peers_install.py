"""What bench.peers says when a peer cannot be installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import _peers_install as install


def test_the_peers_extra_is_read_from_pyproject() -> None:
    extra = install.peers_extra()
    for package in ("restate-sdk", "hypercorn", "celery[redis]", "dbos"):
        assert any(requirement.startswith(package) for requirement in extra)


def test_a_missing_module_names_what_to_install() -> None:
    with pytest.raises(install.PeerUnavailable, match=r"no_such_module_xyz missing: pip install no_such_module_xyz"):
        install.require_modules("json", "no_such_module_xyz")


def test_no_npm_means_no_restate_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(install.PeerUnavailable, match="npm not found"):
        install.restate_server(tmp_path)


def test_no_redis_and_not_root_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(install.PeerUnavailable, match=r"redis-server not found: apt-get install redis-server"):
        install.redis_server()
