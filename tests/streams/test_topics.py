"""The topic catalog and its names: explicit roles, no name made up from a typo."""

from __future__ import annotations

import pytest

from taskplane.streams.topics import Topics, catalog, catalog_spec


def test_every_catalog_role_has_exactly_one_property() -> None:
    topics = Topics("p")
    properties = {name for name, value in vars(Topics).items() if isinstance(value, property)}
    assert properties == {spec.role.replace("-", "_") for spec in catalog()}
    for spec in catalog():
        assert getattr(topics, spec.role.replace("-", "_")) == f"p.{spec.role}"


def test_a_misspelt_role_is_an_error_not_a_topic_name() -> None:
    with pytest.raises(AttributeError):
        Topics("p").comands  # type: ignore[attr-defined]  # noqa: B018
    with pytest.raises(KeyError):
        catalog_spec("comands")


def test_an_empty_prefix_names_the_role_itself() -> None:
    assert Topics("").commands == "commands"
    assert Topics("").name("changelog") == "changelog"


def test_replication_follows_the_cluster_size() -> None:
    from taskplane.streams.topics import replication_for

    assert [replication_for(n) for n in (1, 2, 3, 5)] == [(1, 1), (2, 1), (3, 2), (3, 2)]
