"""``POST /hooks/<system>`` on a real ``taskplane ui`` process, with the real broker and
orchestrator: signed deliveries start one run per event id, anything unsigned, badly
signed, stale, too large or not JSON is refused and writes nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from taskplane.contract.messages import CommandRejected, RunSubmitted, SubmitRun
from taskplane.streams import kafka_clients
from taskplane.streams.log_reader import read_to_end
from taskplane.streams.publisher import Publisher, run_id_for
from taskplane.streams.serde import Serde
from taskplane.streams.topics import Topics, catalog, ensure_topics
from taskplane.testing import compile_manifest, example_manifest
from taskplane.testing.stack import EventLog, ProcessorThreads
from tests.e2e.console_stack import ConsoleProcess

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

SYSTEM = "document-pipeline"
SECRET = "w3bh00k-s3cret-value"


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, body, {"Content-Type": "application/json", **headers}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def github(body: bytes, delivery: str, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={mac}", "X-GitHub-Delivery": delivery, "X-GitHub-Event": "push"}


def generic(body: bytes, event: str, stamp: int | None = None, secret: str = SECRET) -> dict[str, str]:
    stamp = int(time.time()) if stamp is None else stamp
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Taskplane-Signature": f"sha256={mac}", "X-Taskplane-Timestamp": str(stamp),
            "X-Taskplane-Event-Id": event}


@pytest.mark.timeout(300)
def test_signed_hooks_start_one_run_per_event_and_refused_ones_write_nothing(
        kafka_config: dict[str, Any], kafka_bootstrap: str, database_url: str, unique_prefix: str,
        tmp_path: Path) -> None:
    topics = Topics(unique_prefix)
    ensure_topics(kafka_clients.admin(kafka_config), topics, catalog())
    with Publisher(kafka_config, topics) as publisher:
        publisher.define_system(compile_manifest(example_manifest(SYSTEM).read_text()))
    schema = unique_prefix.replace("-", "_")[:50]
    env = {"TASKPLANE_BOOTSTRAP_SERVERS": kafka_bootstrap, "TASKPLANE_DATABASE_URL": database_url,
           "TASKPLANE_TOPIC_PREFIX": unique_prefix, "TASKPLANE_UI_READ_MODEL_SCHEMA": schema,
           "TASKPLANE_WEBHOOK_SECRET_DOCUMENT_PIPELINE": SECRET, "TASKPLANE_WEBHOOK_MAX_BODY_BYTES": "4096"}
    with ProcessorThreads(kafka_config, topics, database_url, schema) as processors, \
            EventLog(kafka_config, topics.events) as log:
        console = ConsoleProcess(env, tmp_path / "console.log")
        try:
            console.wait_ready()
            hook = f"{console.url}/hooks/{SYSTEM}"
            body = json.dumps({"folder": "examples/document-pipeline/docs", "ref": "main"}).encode()

            status, first = post(hook, body, github(body, "delivery-1"))
            assert (status, first) == (202, {"run_id": run_id_for(SYSTEM, "webhook/delivery-1"),
                                             "idempotency_key": "webhook/delivery-1"})
            assert post(hook, body, github(body, "delivery-1")) == (202, first)  # redelivered: the same run
            status, second = post(hook, body, generic(body, "event-1"))
            assert status == 202 and second["run_id"] == run_id_for(SYSTEM, "webhook/event-1")

            refused = {
                "bad github signature": post(hook, body, github(body + b" ", "delivery-2")),
                "other secret": post(hook, body, github(body, "delivery-3", secret="guess")),
                "no signature": post(hook, body, {"X-GitHub-Delivery": "delivery-4"}),
                "stale": post(hook, body, generic(body, "event-2", int(time.time()) - 301)),
                "from the future": post(hook, body, generic(body, "event-3", int(time.time()) + 301)),
                "generic, bad": post(hook, body, {**generic(body, "event-4"), "X-Taskplane-Event-Id": "event-4",
                                                  "X-Taskplane-Signature": "sha256=" + "0" * 64}),
            }
            assert {why: status for why, (status, _) in refused.items()} == dict.fromkeys(refused, 401)
            big = json.dumps({"pad": "x" * 5000}).encode()
            assert post(hook, big, github(big, "delivery-5"))[0] == 413
            assert post(hook, b"not json", github(b"not json", "delivery-6"))[0] == 400
            assert post(hook, body, {k: v for k, v in github(body, "x").items() if k != "X-GitHub-Delivery"})[0] == 400
            assert post(f"{console.url}/hooks/no-such-system", body, github(body, "delivery-7"))[0] == 404

            ids = {first["run_id"], second["run_id"]}
            log.wait_for(lambda events: {e.run_id for e in events.events(RunSubmitted)} >= ids, timeout_s=60,
                         also=processors.check)
            log.wait_for(lambda events: events.events(CommandRejected, first["run_id"]), timeout_s=60)
        finally:
            console.stop()
    submitted = [event.run_id for event in log.events(RunSubmitted)]
    assert sorted(submitted) == sorted(ids)  # one run per event id
    assert [e.reason for e in log.events(CommandRejected, first["run_id"])] == ["duplicate: run already submitted"]
    serde = Serde()
    written = [serde.decode(value)[1] for _p, _k, value in read_to_end(kafka_config, topics.commands) if value]
    keys = sorted(c.idempotency_key for c in written if isinstance(c, SubmitRun))
    assert keys == ["webhook/delivery-1", "webhook/delivery-1", "webhook/event-1"]  # the refused wrote nothing
    assert SECRET not in (tmp_path / "console.log").read_text()
