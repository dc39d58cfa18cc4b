"""The worker's side of approvals: a call to an approval-required tool that the journal
does not answer ("succeeded": its result; "granted, not yet run": go ahead) ends the
attempt with a ``RequestApproval`` instead of running. The orchestrator decides the rest;
nothing here can grant (docs/governance.md, "Approvals")."""

from __future__ import annotations

import logging
import os

from taskplane.contract.approvals import APPROVAL_KEY_ENV
from taskplane.contract.messages import RequestApproval

log = logging.getLogger(__name__)

PREVIEW_CHARS = 500


class ApprovalPending(BaseException):  # noqa: N818 - control flow, like KeyboardInterrupt
    """Ends the attempt: its call waits for a person. A ``BaseException`` so the agent's
    own ``except Exception`` cannot swallow it and go on as if the call had run."""

    def __init__(self, request: RequestApproval) -> None:
        super().__init__(f"tool {request.tool!r} waits for approval {request.key}")
        self.request = request


def preview(text: str) -> str:
    """What a person sees of the call's input."""
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 1] + "…"


def drop_approval_key() -> None:
    """Workers never hold the key that signs decisions: a worker started with it in its
    environment forgets it before any agent or tool code runs."""
    if os.environ.pop(APPROVAL_KEY_ENV, None) is not None:
        log.warning("%s is set in the worker's environment: dropped (only people hold it)", APPROVAL_KEY_ENV)
