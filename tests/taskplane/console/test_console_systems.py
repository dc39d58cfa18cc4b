"""The systems page reads the ``systems`` topic: pinned versions (key ``name@version``)
are versions of a system, never systems of their own."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from taskplane.console.systems import SystemCatalog
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import compile_manifest, example_manifest

pytestmark = [pytest.mark.kafka]


def test_pinned_versions_are_listed_as_versions_of_their_system(kafka_config: dict[str, Any],
                                                                 unique_prefix: str) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(AdminClient(dict(kafka_config)), topics, catalog())
    text = example_manifest("document-pipeline").read_text()
    first = compile_manifest(text)
    second = compile_manifest(text.replace("maxRetries: 3", "maxRetries: 4"))
    assert first.version != second.version
    with Publisher(kafka_config, topics) as publisher:
        publisher.define_system(first)
        publisher.define_system(second)
    systems = SystemCatalog(kafka_config, topics, timeout_s=30).systems()
    assert [(s["name"], s["version"]) for s in systems] == [("document-pipeline", second.version)]
    assert set(systems[0]["versions"]) == {first.version, second.version}
