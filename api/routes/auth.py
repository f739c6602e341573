"""Registration, login, refresh-token rotation and logout.

Logins, registrations and refreshes are rate limited (``api.throttle``) and counted
(``auth_attempts_total``); responses carrying tokens are ``Cache-Control: no-store``.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from api.auth_metrics import Endpoint, Outcome
from api.client import client_of
from api.deps import ServicesDep, SessionDep
from api.errors import Conflict, Overloaded, TooManyRequests, Unauthorized
from api.models import RefreshToken, User
from api.schemas import Credentials, RefreshRequest, TokenPair, UserOut
from api.security import HashingBusy, hash_refresh_token, new_refresh_token
from api.services import Services
from api.throttle import Throttled, account_key

router = APIRouter(prefix="/auth", tags=["auth"])
T = TypeVar("T")

# Requests that hash a password: admitted as a class of their own (``api.admission``).
HASHING_PATHS = ("/auth/login", "/auth/register")
ENDPOINTS: dict[str, Endpoint] = {
    "/auth/login": "login",
    "/auth/register": "register",
    "/auth/refresh": "refresh",
}
NO_STORE = "no-store"

# Verified when the e-mail is unknown, so a miss costs as much time as a wrong password.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$g0gvIUM/xvcFCNdZzRPBew$"
    "+wV/SIZPNy7rrYoJH2GKfBK/O/bbNuf5fdj5awFC5CQ"
)


async def _issue_pair(
    *, services: Services, session: SessionDep, user_id: int, family_id: uuid.UUID
) -> TokenPair:
    now = datetime.now(UTC)
    refresh = new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user_id,
            family_id=family_id,
            token_hash=hash_refresh_token(refresh),
            created_at=now,
            expires_at=now + timedelta(seconds=services.settings.refresh_token_ttl_seconds),
        )
    )
    await session.commit()
    return TokenPair(
        access_token=services.tokens.issue(user_id=user_id, session_id=family_id, now=now),
        refresh_token=refresh,
        expires_in=services.settings.access_token_ttl_seconds,
    )


def count(services: Services, endpoint: Endpoint, outcome: Outcome) -> None:
    if services.auth_metrics is not None:
        services.auth_metrics.count(endpoint, outcome)


async def _limit(services: Services, endpoint: Endpoint, check: Awaitable[T]) -> T:
    """Await a throttle check; past a limit, 429 (counted) instead of doing the work."""
    try:
        return await check
    except Throttled as exc:
        count(services, endpoint, "rate_limited")
        raise TooManyRequests(str(exc), retry_after=exc.retry_after) from None


async def _hashing(services: Services, work: Awaitable[T]) -> T:
    """Await a bounded password hash; 503 (counted as shed) when hashing is full."""
    try:
        return await work
    except HashingBusy as exc:
        if services.auth_metrics is not None:
            services.auth_metrics.rejected("overload")
        raise Overloaded(f"{exc}; retry after 1 s") from None


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(
    body: Credentials, request: Request, services: ServicesDep, session: SessionDep
) -> User:
    email = body.email.lower()
    throttle, client = services.throttle, client_of(request.scope)
    if throttle is not None:
        await _limit(services, "register", throttle.before_register(client))
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        await _taken(services, client)
    password_hash = await _hashing(services, services.passwords.hash_bounded(body.password))
    user = User(email=email, password_hash=password_hash)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        await _taken(services, client)
    if throttle is not None:
        await throttle.registered(client)
    count(services, "register", "success")
    return user


async def _taken(services: Services, client: str) -> NoReturn:
    if services.throttle is not None:
        await services.throttle.registered(client)
    count(services, "register", "invalid")
    raise Conflict("email already registered")


@router.post("/login", response_model=TokenPair)
async def login(
    body: Credentials,
    request: Request,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
) -> TokenPair:
    throttle, client, account = services.throttle, client_of(request.scope), account_key(body.email)
    known = True
    if throttle is not None:
        known = await _limit(services, "login", throttle.before_login(account, client))
    user = await session.scalar(select(User).where(User.email == body.email.lower()))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    valid = await _hashing(services, services.passwords.verify_bounded(stored, body.password))
    if user is None or not valid:
        if throttle is not None:
            await throttle.login_failed(account, client, known=known)
        count(services, "login", "bad_credentials")
        raise Unauthorized("invalid email or password")
    if throttle is not None:
        await throttle.login_succeeded(account, client)
    count(services, "login", "success")
    response.headers["Cache-Control"] = NO_STORE
    return await _issue_pair(
        services=services, session=session, user_id=user.id, family_id=uuid.uuid4()
    )


@router.post("/refresh", response_model=TokenPair)
async def refresh(
    body: RefreshRequest,
    request: Request,
    response: Response,
    services: ServicesDep,
    session: SessionDep,
) -> TokenPair:
    throttle, client = services.throttle, client_of(request.scope)
    if throttle is not None:
        await _limit(services, "refresh", throttle.before_refresh(client))
    try:
        pair = await _rotate(body.refresh_token, services=services, session=session)
    except Unauthorized:
        if throttle is not None:
            await throttle.refresh_failed(client)
        count(services, "refresh", "bad_credentials")
        raise
    count(services, "refresh", "success")
    response.headers["Cache-Control"] = NO_STORE
    return pair


async def _rotate(presented: str, *, services: Services, session: SessionDep) -> TokenPair:
    now = datetime.now(UTC)
    token = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_refresh_token(presented))
    )
    if token is None:
        raise Unauthorized("refresh token invalid")
    if token.revoked_at is not None:
        raise Unauthorized("refresh token revoked")
    if token.expires_at <= now:
        raise Unauthorized("refresh token expired")
    # Claim the token atomically: of two concurrent refreshes only one may rotate it.
    claimed = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == token.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        # A rotated token came back: it was stolen or replayed. End the whole session.
        await _revoke_family(session, token.family_id, now)
        await session.commit()
        raise Unauthorized("refresh token reused; session revoked")
    return await _issue_pair(
        services=services, session=session, user_id=token.user_id, family_id=token.family_id
    )


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshRequest, session: SessionDep) -> Response:
    token = await session.scalar(
        select(RefreshToken).where(
            RefreshToken.token_hash == hash_refresh_token(body.refresh_token)
        )
    )
    if token is not None:
        await _revoke_family(session, token.family_id, datetime.now(UTC))
        await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _revoke_family(session: SessionDep, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
