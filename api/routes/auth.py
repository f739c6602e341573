"""Registration, login, refresh-token rotation and logout."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response, status
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from api.deps import ServicesDep, SessionDep
from api.errors import Conflict, Unauthorized
from api.models import RefreshToken, User
from api.schemas import Credentials, RefreshRequest, TokenPair, UserOut
from api.security import hash_refresh_token, new_refresh_token
from api.services import Services

router = APIRouter(prefix="/auth", tags=["auth"])

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


@router.post("/register", status_code=status.HTTP_201_CREATED, response_model=UserOut)
async def register(body: Credentials, services: ServicesDep, session: SessionDep) -> User:
    email = body.email.lower()
    if await session.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("email already registered")
    password_hash = await asyncio.to_thread(services.passwords.hash, body.password)
    user = User(email=email, password_hash=password_hash)
    session.add(user)
    try:
        await session.commit()
    except IntegrityError:
        raise Conflict("email already registered") from None
    return user


@router.post("/login", response_model=TokenPair)
async def login(body: Credentials, services: ServicesDep, session: SessionDep) -> TokenPair:
    user = await session.scalar(select(User).where(User.email == body.email.lower()))
    stored = user.password_hash if user is not None else _DUMMY_HASH
    valid = await asyncio.to_thread(services.passwords.verify, stored, body.password)
    if user is None or not valid:
        raise Unauthorized("invalid email or password")
    return await _issue_pair(
        services=services, session=session, user_id=user.id, family_id=uuid.uuid4()
    )


@router.post("/refresh", response_model=TokenPair)
async def refresh(body: RefreshRequest, services: ServicesDep, session: SessionDep) -> TokenPair:
    now = datetime.now(UTC)
    token = await session.scalar(
        select(RefreshToken).where(
            RefreshToken.token_hash == hash_refresh_token(body.refresh_token)
        )
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
