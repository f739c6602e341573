"""Passwords (Argon2id), access tokens (JWT) and refresh tokens (random, stored hashed)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
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

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


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
