"""Console sign-in: the admin token once, then a signed, HttpOnly, SameSite=Strict cookie.

A session is ``<expiry>.<nonce>.<signature>``, signed with a key derived from the admin
token, so every worker and instance that shares the token accepts it with nothing stored,
and a new token ends every session. Each form carries a CSRF token derived from the
session's nonce; the sign-in form, before there is a session, a double-submitted one.

    keys = SessionKeys(admin_token)
    cookie = keys.issue(now)            # after the token was offered and matched
    session = keys.verify(cookie, now)  # None: absent, forged or expired
    keys.csrf(session) == form["csrf"]
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

COOKIE = "dynoscope_console"
LOGIN_CSRF_COOKIE = "dynoscope_console_login"
LIFETIME_SECONDS = 8 * 3600


@dataclass(frozen=True)
class Session:
    nonce: str
    expires: int


class SessionKeys:
    """Issues and checks sessions and CSRF tokens for one admin token."""

    def __init__(self, admin_token: str) -> None:
        self._token = admin_token.encode()
        self._key = hashlib.sha256(b"dynoscope-console-session\x00" + self._token).digest()

    def token_matches(self, offered: str) -> bool:
        return hmac.compare_digest(offered.strip().encode(), self._token)

    def _sign(self, text: str) -> str:
        digest = hmac.new(self._key, text.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, now: float) -> str:
        text = f"{int(now) + LIFETIME_SECONDS}.{secrets.token_urlsafe(16)}"
        return f"{text}.{self._sign(text)}"

    def verify(self, cookie: str | None, now: float) -> Session | None:
        if not cookie or cookie.count(".") != 2:
            return None
        expires, nonce, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(f"{expires}.{nonce}")):
            return None
        if not expires.isdigit() or int(expires) <= now:
            return None
        return Session(nonce=nonce, expires=int(expires))

    def csrf(self, session: Session) -> str:
        return self._sign(f"csrf.{session.nonce}")

    def csrf_matches(self, session: Session, offered: str | None) -> bool:
        return offered is not None and hmac.compare_digest(offered, self.csrf(session))
