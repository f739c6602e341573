"""FastAPI dependencies: services, database sessions, the authenticated user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Unauthorized
from api.models import RefreshToken
from api.security import AccessClaims
from api.services import Services

_bearer = HTTPBearer(auto_error=False, description="Access token from POST /auth/login")


# Dependencies are async on purpose: FastAPI runs a sync one in a worker thread, a
# thread hop per request for what is an attribute read.
async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def services_of(request: Request) -> Services:
    """The app's services, for hot read routes: ``request: Request`` costs FastAPI nothing
    to resolve, where ``ServicesDep`` is a sub-dependency solved on every request."""
    services: Services = request.app.state.services
    return services


async def get_session(services: ServicesDep) -> AsyncIterator[AsyncSession]:
    async with services.sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


async def current_claims(
    services: ServicesDep,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> AccessClaims:
    """The verified claims of the request's access token.

    Only writes need a token, so checking the session family costs one indexed query per
    write and lets logout or refresh-token reuse end the session's access tokens at once.
    """
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing bearer token")
    claims = services.tokens.verify(credentials.credentials)
    revoked = await session.scalar(
        select(RefreshToken.id)
        .where(RefreshToken.family_id == claims.session_id, RefreshToken.revoked_at.is_not(None))
        .limit(1)
    )
    if revoked is not None:
        raise Unauthorized("session revoked")
    return claims


ClaimsDep = Annotated[AccessClaims, Depends(current_claims)]
