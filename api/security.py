"""Passwords (Argon2id), access tokens (JWT) and refresh tokens (random, stored hashed)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from api.errors import Unauthorized

JWT_ALGORITHM = "HS256"
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret


class Passwords:
    """Argon2id hashing with the library's memory-hard defaults.

    >>> p = Passwords(); h = p.hash("correct horse")
    >>> p.verify(h, "correct horse"), p.verify(h, "wrong")
    (True, False)
    """

    def __init__(self, hasher: PasswordHasher | None = None, *, max_concurrent: int = 4) -> None:
        self._hasher = hasher or PasswordHasher()
        self.max_concurrent = max_concurrent
        self.in_flight = 0

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    async def hash_bounded(self, password: str) -> str:
        """``hash`` in a thread, at most ``max_concurrent`` at once (``HashingBusy`` past
        that, at once: a storm of sign-ins is refused rather than queued behind reads)."""
        async with self._slot():
            return await asyncio.to_thread(self.hash, password)

    async def verify_bounded(self, password_hash: str, password: str) -> bool:
        """``verify`` in a thread, bounded like ``hash_bounded``."""
        async with self._slot():
            return await asyncio.to_thread(self.verify, password_hash, password)

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        if self.in_flight >= self.max_concurrent:
            raise HashingBusy(self.max_concurrent)
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


class HashingBusy(Exception):
    """As many passwords are being hashed as a worker may (``MAX_IN_FLIGHT_AUTH``)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the server is hashing as many passwords as it may ({limit} at a time)")
        self.limit = limit


@dataclass(frozen=True)
class AccessClaims:
    user_id: int
    session_id: uuid.UUID


class AccessTokens:
    """Short-lived HS256 JWTs carrying the user and the session family."""

    def __init__(self, *, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._ttl = timedelta(seconds=ttl_seconds)

    def issue(self, *, user_id: int, session_id: uuid.UUID, now: datetime | None = None) -> str:
        issued = now or datetime.now(UTC)
        claims = {
            "sub": str(user_id),
            "sid": str(session_id),
            "typ": ACCESS_TOKEN_TYPE,
            "iat": issued,
            "exp": issued + self._ttl,
        }
        return jwt.encode(claims, self._secret, algorithm=JWT_ALGORITHM)

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[JWT_ALGORITHM],
                options={"require": ["sub", "sid", "exp", "iat", "typ"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("access token expired") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("access token invalid") from None
        try:
            session_id = uuid.UUID(str(claims["sid"]))
        except ValueError:
            raise Unauthorized("access token invalid") from None
        if claims.get("typ") != ACCESS_TOKEN_TYPE or not str(claims["sub"]).isdigit():
            raise Unauthorized("access token invalid")
        return AccessClaims(user_id=int(claims["sub"]), session_id=session_id)


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
