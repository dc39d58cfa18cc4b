"""The webhook signature check alone: profiles, the skew bound, the event id; and the
route's refusals of a signed body that is not JSON, with no broker (nothing submitted)."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from taskplane.console.webhooks import (
    Refused,
    WebhookSettings,
    routes,
    secret_env,
    secret_for,
    verify,
)

SECRET = b"s3cret"
BODY = b'{"a": 1}'
NOW = 1_765_000_000


def mac(payload: bytes, secret: bytes = SECRET) -> str:
    return "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest()


def generic(stamp: int, event: str = "e-1", body: bytes = BODY) -> dict[str, str]:
    return {"x-taskplane-signature": mac(f"{stamp}.".encode() + body), "x-taskplane-timestamp": str(stamp),
            "x-taskplane-event-id": event}


def test_github_profile_signs_the_body_and_names_the_delivery() -> None:
    headers = {"x-hub-signature-256": mac(BODY), "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958"}
    assert verify(headers, BODY, SECRET, NOW, 300) == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    with pytest.raises(Refused) as refused:
        verify(headers, BODY + b"\n", SECRET, NOW, 300)
    assert refused.value.status == 401


@pytest.mark.parametrize(("offset", "ok"), [(0, True), (300, True), (-300, True), (301, False), (-301, False)])
def test_generic_profile_holds_the_timestamp_within_the_skew(offset: int, ok: bool) -> None:
    headers = generic(NOW + offset)
    if ok:
        assert verify(headers, BODY, SECRET, NOW, 300) == "e-1"
    else:
        with pytest.raises(Refused, match="timestamp outside"):
            verify(headers, BODY, SECRET, NOW, 300)


def test_a_signature_over_another_timestamp_is_refused() -> None:
    headers = {**generic(NOW), "x-taskplane-timestamp": str(NOW + 1)}
    with pytest.raises(Refused, match="bad signature"):
        verify(headers, BODY, SECRET, NOW, 300)


def test_nothing_signed_is_401_and_a_signed_request_without_an_event_id_is_400() -> None:
    with pytest.raises(Refused) as unsigned:
        verify({"x-taskplane-event-id": "e"}, BODY, SECRET, NOW, 300)
    assert unsigned.value.status == 401
    with pytest.raises(Refused) as no_id:
        verify({k: v for k, v in generic(NOW).items() if k != "x-taskplane-event-id"}, BODY, SECRET, NOW, 300)
    assert no_id.value.status == 400
    with pytest.raises(Refused) as bad_id:
        verify(generic(NOW, event="a/b c"), BODY, SECRET, NOW, 300)
    assert bad_id.value.status == 400


def test_the_secret_comes_from_the_systems_variable() -> None:
    assert secret_env("document-pipeline") == "TASKPLANE_WEBHOOK_SECRET_DOCUMENT_PIPELINE"
    assert secret_for("document-pipeline", {"TASKPLANE_WEBHOOK_SECRET_DOCUMENT_PIPELINE": "x"}) == b"x"
    assert secret_for("document-pipeline", {"TASKPLANE_WEBHOOK_SECRET_DOCUMENT_PIPELINE": ""}) is None


def test_a_timestamp_that_is_not_unix_seconds_says_so() -> None:
    for stamp in ("abc", "-5", "1.5e9", "١٢٣"):
        with pytest.raises(Refused, match="X-Taskplane-Timestamp is not unix seconds") as refused:
            verify({**generic(NOW), "x-taskplane-timestamp": stamp}, BODY, SECRET, NOW, 300)
        assert refused.value.status == 401


class _Recorded:
    """Stands in for HookSubmitter: what would have been written."""

    def __init__(self) -> None:
        self.inputs: list[str] = []

    def submit(self, system: str, input_text: str, event_id: str) -> tuple[str, str]:
        self.inputs.append(input_text)
        return "run-1", "webhook/" + event_id


@pytest.mark.parametrize(("body", "says"), [
    (b"NaN", "the body is not JSON: NaN is not a JSON value"),  # was 202: a run whose input no other parser reads
    (b'{"a": Infinity}', "the body is not JSON: Infinity is not a JSON value"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),  # was a RecursionError: 500 and a traceback
    (b"\xff", "not UTF-8"),
    (b'{"a": ', "the body is not JSON: Expecting value"),
])
def test_a_signed_body_that_is_not_json_is_400_and_nothing_is_submitted(
        monkeypatch: pytest.MonkeyPatch, body: bytes, says: str) -> None:
    monkeypatch.setenv("TASKPLANE_WEBHOOK_SECRET_PAIR", SECRET.decode())
    recorded = _Recorded()
    client = TestClient(Starlette(routes=routes(recorded, WebhookSettings(max_body_bytes=900 * 1024))))  # type: ignore[arg-type]
    answer = client.post("/hooks/pair", content=body, headers=generic(int(time.time()), body=body))
    assert answer.status_code == 400 and says in answer.json()["error"], answer.text
    assert recorded.inputs == []
    ok = client.post("/hooks/pair", content=BODY, headers=generic(int(time.time())))
    assert ok.status_code == 202 and recorded.inputs == ['{"a":1}']
