"""The webhook signature check alone: profiles, the skew bound, the event id."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from taskplane.console.webhooks import Refused, secret_env, secret_for, verify

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
