"""Who may write, and proof that a form came from the console.

- Without ``TASKPLANE_UI_TOKEN`` the console is read-only: every write is refused.
- With it, a write needs the token: ``Authorization: Bearer <token>``, or the session
  cookie the login form sets (HttpOnly, SameSite=Strict). The cookie holds
  ``<nonce>.<issued_s>.<hmac(token, nonce.issued_s)>``, never the token itself, and
  stops working when the token changes or after ``SESSION_MAX_AGE_S``.
- Forms carry a CSRF token equal to the HttpOnly ``taskplane_csrf`` cookie
  (double submit); a cookie-authenticated JSON write sends it as ``X-CSRF-Token``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from pydantic import SecretStr
from starlette.requests import Request

from taskplane.console.errors import Forbidden

SESSION_COOKIE = "taskplane_session"
CSRF_COOKIE = "taskplane_csrf"
SESSION_MAX_AGE_S = 12 * 3600
READ_ONLY = "the console is read-only: start it with TASKPLANE_UI_TOKEN set to allow replay and cancel"


class Guard:
    def __init__(self, token: SecretStr | None) -> None:
        value = token.get_secret_value() if token is not None else ""
        self._key = value.encode() if value else None

    @property
    def writable(self) -> bool:
        return self._key is not None

    def token_matches(self, candidate: str) -> bool:
        return self._key is not None and hmac.compare_digest(candidate.encode(), self._key)

    def new_session(self, now_s: int | None = None) -> str:
        nonce = secrets.token_urlsafe(16)
        body = f"{nonce}.{now_s if now_s is not None else int(time.time())}"
        return f"{body}.{self._sign(body)}"

    def session_valid(self, cookie: str | None, now_s: int | None = None) -> bool:
        if self._key is None or not cookie or cookie.count(".") != 2:
            return False
        nonce, issued, mac = cookie.split(".")
        if not issued.isdigit() or not hmac.compare_digest(mac, self._sign(f"{nonce}.{issued}")):
            return False
        return (now_s if now_s is not None else int(time.time())) - int(issued) < SESSION_MAX_AGE_S

    def _sign(self, body: str) -> str:
        assert self._key is not None
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def bearer(self, request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else None

    def signed_in(self, request: Request) -> bool:
        bearer = self.bearer(request)
        if bearer is not None:
            return self.token_matches(bearer)
        return self.session_valid(request.cookies.get(SESSION_COOKIE))

    def require_writer(self, request: Request, csrf_sent: str | None) -> None:
        """Refuse unless the request carries the token (bearer), or a valid session
        cookie plus the CSRF token that matches its cookie."""
        if not self.writable:
            raise Forbidden(READ_ONLY)
        bearer = self.bearer(request)
        if bearer is not None:
            if not self.token_matches(bearer):
                raise Forbidden("wrong token")
            return
        if not self.session_valid(request.cookies.get(SESSION_COOKIE)):
            raise Forbidden("replay and cancel need the console token: log in first")
        check_csrf(request, csrf_sent)


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser (its cookie), or a new one to set."""
    return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)


def check_csrf(request: Request, sent: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not sent or not hmac.compare_digest(cookie, sent):
        raise Forbidden("the form's CSRF token is missing or stale: reload the page and try again")
