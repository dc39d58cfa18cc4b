"""Finding the user's code when no --module is given: the checkout's examples/, then
the example systems shipped in the wheel."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskplane.workers import loader
from taskplane.workers.exceptions import RegistryError


def test_without_a_checkout_the_shipped_example_is_loaded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(loader, "EXAMPLES", tmp_path)  # as in an installed wheel: no examples/
    module = loader.load_user_module(None, "payment-processor")
    assert module.__name__ == "taskplane._examples.payment_processor.tools"
    assert callable(module.payment_processor)


def test_an_unknown_system_says_where_it_looked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(loader, "EXAMPLES", tmp_path)
    with pytest.raises(RegistryError, match="ships no example system 'no.such'"):
        loader.load_user_module(None, "no.such")
    with pytest.raises(RegistryError, match="ships no example system 'billing'"):
        loader.load_user_module(None, "billing")
