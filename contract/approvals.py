"""The signature that makes an approval decision a person's.

A ``DecideApproval`` carries the HMAC-SHA256 of (approval id, verdict, who, decided_ms)
keyed by ``TASKPLANE_APPROVAL_KEY``. The CLI, the client and the console hold the key
and sign; the orchestrator holds it and checks; workers never get it, so nothing an
agent or a tool runs can make a decision the orchestrator accepts. Pure: no I/O, no
clock (the time is the signer's, recorded in the command).
"""

from __future__ import annotations

import hashlib
import hmac

APPROVAL_KEY_ENV = "TASKPLANE_APPROVAL_KEY"
GRANTED, DENIED = "granted", "denied"


def _material(approval_id: str, granted: bool, who: str, decided_ms: int) -> bytes:
    verdict = GRANTED if granted else DENIED
    # Length-prefixed parts: no two different tuples give the same bytes.
    parts = [approval_id, verdict, who, str(int(decided_ms))]
    return b"".join(len(p.encode()).to_bytes(4, "big") + p.encode() for p in parts)


def sign(key: bytes, approval_id: str, granted: bool, who: str, decided_ms: int) -> str:
    """The hex signature of one decision."""
    return hmac.new(key, _material(approval_id, granted, who, decided_ms), hashlib.sha256).hexdigest()


def signature_problem(key: bytes | None, approval_id: str, granted: bool, who: str, decided_ms: int,
                      signature: str) -> str | None:
    """Why the decision is not a person's (None when the signature is good). With no
    key configured every decision is refused: approvals fail closed."""
    if not key:
        return f"approvals fail closed: the orchestrator has no {APPROVAL_KEY_ENV} configured"
    if not who.strip():
        return "a decision names who decided"
    if not signature:
        return "unsigned decision (only a person holding the approval key can decide)"
    expected = sign(key, approval_id, granted, who, decided_ms)
    if not hmac.compare_digest(expected, signature):
        return "bad signature (only a person holding the approval key can decide)"
    return None
