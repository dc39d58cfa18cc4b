"""Schedules as people see them, on the real broker and cron processor: `taskplane
schedules list | pause | resume` and the console's systems (next slot, last fired, paused)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from typer.testing import CliRunner

from taskplane.cli import app
from taskplane.console.systems import SystemCatalog
from taskplane.contract.cron import ApplySchedules, ScheduleSpec
from taskplane.schedules import ScheduleView, read_schedules
from taskplane.streams import kafka_clients
from taskplane.streams.publisher import Publisher
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import compile_manifest, example_manifest
from taskplane.testing.stack import ProcessorThreads

pytestmark = [pytest.mark.kafka]


def until(read: Any, check: Any, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = read()
        if check(found):
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.2)


def test_pause_and_resume_are_recorded_and_shown(kafka_config: dict[str, Any], kafka_bootstrap: str,
                                                 unique_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKPLANE_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("TASKPLANE_TOPIC_PREFIX", unique_prefix)
    topics = Topics(unique_prefix)
    ensure_topics(kafka_clients.admin(kafka_config), topics, catalog())
    definition = compile_manifest(example_manifest("document-pipeline").read_text())
    every_second = ScheduleSpec("every-second", "* * * * * *", "UTC", "{}", "allow")
    with Publisher(kafka_config, topics) as publisher:
        publisher.define_system(definition)
        publisher.to_cron(ApplySchedules(definition.name, definition.version, definition.plan, (every_second,)))
    cli = CliRunner()

    def view() -> list[ScheduleView]:
        return read_schedules(kafka_config, topics)

    with ProcessorThreads(kafka_config, topics, None):
        (fired,) = until(view, lambda found: found and found[0].fired >= 2)
        assert fired.last_slot_ms is not None and fired.next_slot_ms is not None and not fired.paused
        listed = cli.invoke(app, ["schedules", "list"])
        assert listed.exit_code == 0 and "every-second" in listed.output and "active" in listed.output

        paused = cli.invoke(app, ["schedules", "pause", "every-second"])
        assert paused.exit_code == 0, paused.output
        (stopped,) = until(view, lambda found: found[0].paused)
        time.sleep(2.5)  # slots pass while paused: none fires
        (still,) = view()
        assert (still.fired, still.next_slot_ms) == (stopped.fired, None)
        shown = SystemCatalog(kafka_config, topics, timeout_s=30).systems()[0]["schedules"][0]
        assert (shown["name"], shown["paused"], shown["next_slot_ms"]) == ("every-second", True, None)

        assert cli.invoke(app, ["schedules", "resume", "every-second"]).exit_code == 0
        until(view, lambda found: not found[0].paused and found[0].fired > still.fired)

        unknown = cli.invoke(app, ["schedules", "pause", "weekly"])
        assert unknown.exit_code == 2 and "unknown schedule 'weekly'" in unknown.output
        # A system never applied: was 'no schedules', exit 0 (and nothing at all with --json).
        for argv in (["list", "--system", "nope"], ["list", "--json", "--system", "nope"],
                     ["pause", "every-second", "--system", "nope"]):
            refused = cli.invoke(app, ["schedules", *argv])
            assert refused.exit_code == 2, refused.output
            assert refused.output.strip() == ("error: --system: no system named 'nope' was applied "
                                              "(applied: document-pipeline)"), refused.output
        assert cli.invoke(app, ["schedules", "list", "--system", "document-pipeline"]).exit_code == 0
